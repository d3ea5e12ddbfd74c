"""``python record_worker.py OUT_DIR gandist-train-args...``: ``gandist train`` through the CLI's
own ``main``, recording what this rank consumed: the index of every real image (the test data
carries it in its pixels, see data_helpers.indexed_image) and the first noise value of every draw.
Written to ``OUT_DIR/rank<R>.json`` when training ends."""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gandist.data  # noqa: E402
import gandist.latents  # noqa: E402
from data_helpers import index_of  # noqa: E402
from gandist.cli import main  # noqa: E402

OUT = Path(sys.argv[1])
record: dict[str, list] = {"images": [], "noise": []}


class _Recording:
    """The stream, with every yielded real batch's image indices recorded."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def __iter__(self):
        for images, labels in self._stream:
            record["images"].extend(index_of(img) for img in images.numpy())
            yield images, labels


_build = gandist.data.build_stream
gandist.data.build_stream = lambda *a, **k: _Recording(_build(*a, **k))
_draw = gandist.latents.LatentSampler.draw


def _recording_draw(self, batch, step, phase, micro):
    z, labels = _draw(self, batch, step, phase, micro)
    record["noise"].append(float(z[0, 0]))
    return z, labels


gandist.latents.LatentSampler.draw = _recording_draw


@atexit.register
def _write() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(record))


sys.exit(main(["train", *sys.argv[2:]]))
