"""gandist: distributed GAN training on sharded image data."""

__version__ = "0.1.0"

# The model registry registers its config checks (model names) on import; it imports no torch.
import gandist.models  # noqa: E402,F401
