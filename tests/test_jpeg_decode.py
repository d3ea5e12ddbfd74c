"""JPEG decoding (gandist.data.jpeg): Pillow and simplejpeg give the same pixels, full size and
DCT-scaled to the training size; data.jpeg_decoder picks one, is printed, and the loader's
batches do not depend on which."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from gandist.config import DataConfig
from gandist.data import build_stream, resolve_dataset, write_shards
from gandist.data import jpeg
from gandist.data.dataset import read_all
from gandist.errors import ConfigError

pytest.importorskip("simplejpeg", reason="simplejpeg comes with the dev extra")


def _jpeg(a: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a.squeeze()).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _photo(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    low = np.random.default_rng(seed).integers(0, 256, (5, 5, 3), dtype=np.uint8)
    a = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC))
    return a[:, :, :1] if c == 1 else a


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("shape,min_size", [((64, 64), 0), ((64, 64), 16), ((120, 72), 32), ((40, 40), 64)])
def test_decoders_agree_and_scale_no_lower_than_asked(channels, shape, min_size):
    data = _jpeg(_photo(*shape, channels))
    a = jpeg.decode_jpeg(data, min_size, "pil")
    b = jpeg.decode_jpeg(data, min_size, "simplejpeg")
    assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape and a.shape[2] == channels
    assert np.array_equal(a, b)
    h, w = a.shape[:2]
    if min_size and min(shape) >= 2 * min_size:  # scaled: fewer pixels, never below the size asked for
        assert h < shape[0] and min(h, w) >= min_size
    else:
        assert (h, w) == shape


def test_not_really_a_jpeg_still_decodes():
    buf = io.BytesIO()
    Image.fromarray(_photo(20, 20, 3)).save(buf, "PNG")  # a .jpg member holding a PNG
    for decoder in ("pil", "simplejpeg"):
        assert jpeg.decode_jpeg(buf.getvalue(), 8, decoder).shape == (20, 20, 3)


def test_choice_auto_explicit_and_missing(monkeypatch):
    assert jpeg.resolve_decoder("auto") == "simplejpeg" and jpeg.resolve_decoder("pil") == "pil"
    monkeypatch.setattr(jpeg, "simplejpeg_version", lambda: None)
    assert jpeg.resolve_decoder("auto") == "pil"
    with pytest.raises(ConfigError, match="data.jpeg_decoder: simplejpeg is not installed"):
        jpeg.resolve_decoder("simplejpeg")


def test_loader_batches_do_not_depend_on_the_decoder(tmp_path):
    # 48 px colour JPEGs trained at 16 px: decoded by DCT scaling (24 px), then resized.
    samples = [(f"{i:04d}", _photo(48, 48, 3, seed=i), i % 3) for i in range(24)]
    write_shards(samples, tmp_path / "s", class_names=["a", "b", "c"], shard_size=10, fmt="jpg")
    batches, notes = {}, []
    for decoder in ("pil", "simplejpeg"):
        cfg = DataConfig(path=str(tmp_path / "s"), jpeg_decoder=decoder, shuffle_buffer=8, num_workers=0)
        s = build_stream(cfg, resolve_dataset(cfg), batch_size_per_rank=8, rank=0, world_size=1, seed=1,
                         image_size=16, channels=0, log=notes.append)
        assert s.plan.jpeg_decoder == decoder
        it = iter(s)
        batches[decoder] = [next(it) for _ in range(3)]
        s.close()
    assert any(n.startswith("data: JPEG decoder: simplejpeg") for n in notes)
    assert any(n.startswith("data: JPEG decoder: Pillow") for n in notes)
    for (x, y), (x2, y2) in zip(batches["pil"], batches["simplejpeg"]):
        assert x.shape == (8, 3, 16, 16) and torch.equal(x, x2) and torch.equal(y, y2)
    # The device cache reads the set the way the loader decodes it.
    imgs_pil, _ = read_all(resolve_dataset(DataConfig(path=str(tmp_path / "s"))), image_size=16, jpeg_decoder="pil")
    imgs_sj, _ = read_all(resolve_dataset(DataConfig(path=str(tmp_path / "s"))), image_size=16, jpeg_decoder="simplejpeg")
    assert np.array_equal(imgs_pil, imgs_sj)
    with pytest.raises(ConfigError, match="data.jpeg_decoder"):
        DataConfig(jpeg_decoder="turbo").validate()
