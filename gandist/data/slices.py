"""``shards make --slice I/N``: which contiguous range of the (shuffled) input slice I of N writes.

Slices are cut from the item order a full ``shards make`` would write (after the seeded shuffle),
as contiguous ranges ``[I * total // N, (I + 1) * total // N)``. So the N slices partition the
input exactly, and slice 0, slice 1, ... concatenated is the full make's order. Keys come from
the global index, so they stay unique across slices; ``shards merge`` puts the parts back together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gandist.errors import DataError


@dataclass(frozen=True)
class Slice:
    index: int
    """Which slice, 0-based."""
    count: int
    """How many slices the input is cut into."""

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def bounds(self, num_items: int) -> tuple[int, int]:
        """``(start, stop)`` of this slice among ``num_items`` items; refuses an empty slice."""
        start = self.index * num_items // self.count
        stop = (self.index + 1) * num_items // self.count
        if start == stop:
            raise DataError(
                f"--slice {self.label}: this slice is empty: the input has only {num_items} item(s); "
                f"use at most {num_items} slice(s)"
            )
        return start, stop

    def record(self, num_items: int) -> dict[str, Any]:
        """What the part's manifest says about the slice (``shards merge`` checks it)."""
        start, stop = self.bounds(num_items)
        return {"index": self.index, "count": self.count, "start": start, "stop": stop, "num_items": num_items}


def parse_slice(text: str) -> Slice:
    """``"3/8"`` -> ``Slice(3, 8)``; anything else, or not ``0 <= I < N``, is a DataError naming ``--slice``."""
    m = re.fullmatch(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*", text)
    if not m:
        raise DataError(f"--slice: expected I/N with 0 <= I < N, e.g. 0/8 (got {text!r})")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 0 <= index < count:
        raise DataError(f"--slice {text}: need N >= 1 and 0 <= I < N (got I={index}, N={count})")
    return Slice(index, count)
