"""gandist: distributed GAN training on sharded image data.

Python API: ``from gandist import load_generator`` (see ``gandist.api``).
"""

from gandist.version import __version__  # noqa: E402

# The model registry registers its config checks (model names) on import; it imports no torch.
import gandist.models  # noqa: E402,F401


def __getattr__(name):
    # Lazy, so that `import gandist` (and the CLI's --help / --dry-run) does not import torch.
    if name in ("load_generator", "Generator"):
        from gandist import api

        return getattr(api, name)
    raise AttributeError(f"module 'gandist' has no attribute {name!r}")


__all__ = ["Generator", "load_generator", "__version__"]
