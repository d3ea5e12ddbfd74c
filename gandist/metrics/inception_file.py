"""The FID Inception weights file: where it comes from and its checks, without importing torch
(``gandist train --dry-run`` checks the file before any work starts)."""

from __future__ import annotations

from pathlib import Path

from gandist.errors import ConfigError
from gandist.fileio import sha256_file

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILENAME
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"


def check_weights_file(weights_path: str | Path, expected_sha256: str | None = WEIGHTS_SHA256) -> str:
    """The file's sha256, after checking it is set, exists and (unless ``expected_sha256`` is
    None, as tests with made-up weights pass) is the published file: another file would give FIDs
    that look valid and compare with nothing. Errors name ``metrics.inception_weights`` (exit 2)."""
    if not weights_path:
        raise ConfigError(
            "metrics.inception_weights: eval.extractor=inception needs a local Inception-v3 weights file "
            f"(gandist never downloads it); fetch {WEIGHTS_URL} once and set "
            f"metrics.inception_weights=/path/to/{WEIGHTS_FILENAME}"
        )
    path = Path(weights_path)
    if not path.is_file():
        raise ConfigError(
            f"metrics.inception_weights: file not found: {path} (expected {WEIGHTS_FILENAME}, sha256 {WEIGHTS_SHA256}, from {WEIGHTS_URL})"
        )
    digest = sha256_file(path)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ConfigError(
            f"metrics.inception_weights: {path}: sha256 {digest} is not that of {WEIGHTS_FILENAME} ({expected_sha256}); "
            f"download the file from {WEIGHTS_URL}"
        )
    return digest
