"""The package version, in a module of its own so that modules which record it (checkpoints,
exported generators) need not import the package root, whose lazy API imports them."""

__version__ = "0.1.0"
