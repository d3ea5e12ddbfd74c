"""The names of the semi-supervised D's class heads (``model.semisup_head``), kept free of torch
so that the model.json parser can check a recorded head without importing the networks."""

HEADS = ("grid", "pool", "flatten")
GRID_SIDE = 4  # head="grid": at most this many positions per side
LEGACY_HEAD = "flatten"  # what runs and files without a recorded head used
