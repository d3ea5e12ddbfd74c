"""gandist: distributed GAN training on sharded image data."""

__version__ = "0.1.0"
