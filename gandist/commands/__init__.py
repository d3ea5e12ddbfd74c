"""One module per CLI verb; see ``gandist.cli``."""
