"""Data: shard writing and verification, the built-in dataset, and the streaming loader.

Public API (stable; other modules and issues build on it):
``resolve_dataset``, ``DatasetInfo``, ``build_stream``, ``ImageStream``, ``write_shards``,
``read_all``, ``shard_name``, ``augment_batch_np``, ``ensure_builtin``, ``digits_arrays``.
"""

from gandist.data.builtin import digits_arrays, ensure_builtin, write_builtin
from gandist.data.dataset import DatasetInfo, read_all, resolve_dataset, shard_name
from gandist.data.pipeline import build_stream
from gandist.data.stream import ImageStream, augment_batch_np
from gandist.data.writer import SourceItem, write_shards

__all__ = [
    "DatasetInfo",
    "ImageStream",
    "SourceItem",
    "augment_batch_np",
    "build_stream",
    "digits_arrays",
    "ensure_builtin",
    "read_all",
    "resolve_dataset",
    "shard_name",
    "write_builtin",
    "write_shards",
]
