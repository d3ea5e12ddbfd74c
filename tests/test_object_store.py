"""Shards in object stores, against real servers the tests start on loopback: moto's S3 server
and Python's HTTP server. The loader reads them through the local shard cache
(gandist.data.remote): the same batches as from the local folder, a cache reused by the next
run and held under its limit, an altered download fetched again, and the faults that stop a run
(server down, object altered for good, missing shard, full disk) end in a DataError (exit 2)
that names the URL."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from conftest import skip_unless_ci
from data_helpers import write_uneven
from gandist.config import DataConfig
from gandist.data import build_stream, resolve_dataset
from gandist.errors import EXIT_BAD_INPUT, DataError

pytest.importorskip("s3fs", reason="the s3 client comes with the dev extra")
pytest.importorskip("moto.server", reason="moto's S3 server comes with the dev extra")

COUNTS = [10, 3, 17, 6]  # 36 samples in 4 shards
BUCKET = "gandist-test"


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Path:
    return write_uneven(tmp_path_factory.mktemp("local"), COUNTS)


def _clear_fs_caches():
    # fsspec keeps one client per protocol and arguments: a test's new server (new port) needs a new one.
    import fsspec

    for cls in (fsspec.get_filesystem_class("s3"), fsspec.get_filesystem_class("http")):
        cls.clear_instance_cache()


@pytest.fixture(scope="module")
def s3(local):
    """An S3 server on loopback holding the shards under s3://gandist-test/ds; yields a function
    that uploads (name -> bytes) over them."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _clear_fs_caches()
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)

    def put(prefix: str, files: dict[str, bytes]):
        for name, data in files.items():
            client.put_object(Bucket=BUCKET, Key=f"{prefix}/{name}", Body=data)

    put("ds", {p.name: p.read_bytes() for p in local.iterdir() if p.is_file()})
    yield put
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _clear_fs_caches()


def _batches(cfg: DataConfig, n: int | None = None, **kw):
    s = build_stream(cfg, resolve_dataset(cfg), batch_size_per_rank=4, rank=0, world_size=1, seed=3, image_size=0,
                     channels=0, **kw)
    it = iter(s)
    out = [next(it) for _ in range(n or s.batches_per_epoch)]
    s.close()
    return out


def _same(a, b):
    assert len(a) == len(b)
    for (x, y), (x2, y2) in zip(a, b):
        assert torch.equal(x, x2) and torch.equal(y, y2)


@pytest.mark.parametrize("workers", [0, 2])
def test_s3_batches_equal_local_and_the_cache_is_reused(s3, local, tmp_path, caplog, workers):
    ref = _batches(DataConfig(path=str(local), shuffle_buffer=5, num_workers=workers))
    cfg = DataConfig(path=f"s3://{BUCKET}/ds", cache_dir=str(tmp_path / "cache"), shuffle_buffer=5, num_workers=workers)
    caplog.set_level("INFO", logger="gandist.data")
    _same(_batches(cfg), ref)
    cached = sorted(p.name.split("-", 1)[1] for p in (tmp_path / "cache" / "shards").glob("*.tar"))
    assert cached == [f"00000{i}.tar" for i in range(4)]  # named <digest>-<name>
    if workers == 0:  # in this process: the log says what came from where
        assert sum("cache miss: fetched s3://" in r.getMessage() for r in caplog.records) == 4
    caplog.clear()
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "shards").glob("*.tar")}
    _same(_batches(cfg), ref)  # a restart: everything from the cache, nothing fetched again
    assert not any("cache miss" in r.getMessage() for r in caplog.records)
    assert {p: p.stat().st_ino for p in mtimes} == {p: p.stat().st_ino for p in (tmp_path / "cache" / "shards").glob("*.tar")}


def test_cache_stays_under_its_limit_evicting_the_least_recently_used(s3, local, tmp_path, caplog):
    sizes = sorted(p.stat().st_size for p in local.glob("*.tar"))
    limit = sizes[-1] + sizes[-2] + 100  # room for the two largest shards, not three
    cfg = DataConfig(path=f"s3://{BUCKET}/ds", cache_dir=str(tmp_path / "cache"), shuffle_buffer=0,
                     cache_limit_gb=limit / 1e9)
    caplog.set_level("INFO", logger="gandist.data")
    ref = _batches(DataConfig(path=str(local), shuffle_buffer=0), 18)
    _same(_batches(cfg, 18), ref)  # two epochs: shards come back after eviction
    held = [p.stat().st_size for p in (tmp_path / "cache" / "shards").glob("*.tar")]
    assert sum(held) <= limit
    assert any("evicted" in r.getMessage() for r in caplog.records)


def test_altered_object_is_fetched_again_then_stops_naming_the_url(s3, local, tmp_path):
    altered = bytearray((local / "000002.tar").read_bytes())
    altered[1000] ^= 0xFF  # same size, another digest
    s3("bad", {**{p.name: p.read_bytes() for p in local.iterdir() if p.is_file()}, "000002.tar": bytes(altered)})
    cfg = DataConfig(path=f"s3://{BUCKET}/bad", cache_dir=str(tmp_path / "cache"), shuffle_buffer=0, remote_retries=1)
    with pytest.raises(DataError, match=rf"shard s3://{BUCKET}/bad/000002.tar could not be fetched after 1 retries: "
                                        r".*truncated or altered") as e:
        _batches(cfg)
    assert e.value.exit_code == EXIT_BAD_INPUT == 2
    assert not any(p.name.endswith("000002.tar") for p in (tmp_path / "cache" / "shards").iterdir())  # never kept


def test_missing_shard_fails_at_start_naming_it(s3, local, tmp_path):
    s3("holey", {p.name: p.read_bytes() for p in local.iterdir() if p.is_file() and p.name != "000001.tar"})
    with pytest.raises(DataError, match=rf"1 shard\(s\) missing: s3://{BUCKET}/holey/000001.tar"):
        resolve_dataset(DataConfig(path=f"s3://{BUCKET}/holey", cache_dir=str(tmp_path / "cache")))
    with pytest.raises(DataError, match=rf"s3://{BUCKET}/nothing/manifest.json does not exist"):
        resolve_dataset(DataConfig(path=f"s3://{BUCKET}/nothing", cache_dir=str(tmp_path / "cache")))


class _FlakyHandler(SimpleHTTPRequestHandler):
    """Serves a folder; ``alter[name] = n`` corrupts the next n downloads of ``name``."""

    alter: dict[str, int] = {}
    served: list[str] = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        name = self.path.rsplit("/", 1)[-1]
        type(self).served.append(name)
        if type(self).alter.get(name, 0) > 0 and self.path.endswith(".tar"):
            type(self).alter[name] -= 1
            data = bytearray(Path(self.directory, name).read_bytes())
            data[len(data) // 2] ^= 0xFF
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        super().do_GET()


@pytest.fixture
def http(local):
    _FlakyHandler.alter, _FlakyHandler.served = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_FlakyHandler, directory=str(local)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _clear_fs_caches()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    _clear_fs_caches()


def test_http_batches_equal_local_and_a_bad_download_is_fetched_again(http, local, tmp_path, caplog):
    _, base = http
    _FlakyHandler.alter = {"000002.tar": 1}
    caplog.set_level("INFO", logger="gandist.data")
    cfg = DataConfig(path=base, cache_dir=str(tmp_path / "cache"), shuffle_buffer=5, remote_retries=2)
    _same(_batches(cfg), _batches(DataConfig(path=str(local), shuffle_buffer=5)))
    assert _FlakyHandler.served.count("000002.tar") == 2  # the altered copy, then a good one
    assert any("000002.tar: " in r.getMessage() and "truncated or altered" in r.getMessage() for r in caplog.records)


def test_server_gone_mid_epoch_retries_then_stops_naming_the_url(http, tmp_path, caplog):
    server, base = http
    cfg = DataConfig(path=base, cache_dir=str(tmp_path / "cache"), shuffle_buffer=0, remote_retries=2)
    s = build_stream(cfg, resolve_dataset(cfg), batch_size_per_rank=4, rank=0, world_size=1, seed=3, image_size=0,
                     channels=0)
    it = iter(s)
    next(it)  # the first shard of the epoch came
    server.shutdown()
    server.server_close()
    caplog.set_level("WARNING", logger="gandist.data")
    with pytest.raises(DataError, match=rf"shard {base}/0000\d\d.tar could not be fetched after 2 retries"):
        for _ in range(s.batches_per_epoch):
            next(it)
    s.close()
    assert sum("retry" in r.getMessage() for r in caplog.records) == 2  # with backoff in between


def test_full_cache_disk_stops_naming_the_folder_and_url(s3, local, tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        skip_unless_ci("mounting a tmpfs needs root")
    # Room for the manifest and the small shards but not the largest one.
    largest = max(p.stat().st_size for p in local.glob("*.tar"))
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={largest // 1024 // 2}k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        skip_unless_ci(f"cannot mount tmpfs: {proc.stderr.strip()}")
    try:
        cfg = DataConfig(path=f"s3://{BUCKET}/ds", cache_dir=str(mnt), shuffle_buffer=0)
        with pytest.raises(DataError, match=rf"data.cache_dir: {mnt}/shards is full while fetching s3://{BUCKET}/ds/"):
            _batches(cfg)
        assert not list((mnt / "shards").glob(".*.part"))  # no partial file left behind
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        shutil.rmtree(mnt, ignore_errors=True)


TINY = ["model.g_width=8", "model.d_width=8", "model.z_dim=8", "train.batch_size=16", "log.every_steps=1",
        "log.sample_every_steps=0", "checkpoint.every_steps=2", "log.progress=false"]


@pytest.mark.slow
def test_gandist_train_from_http_then_exit_2_naming_the_url_when_it_is_gone(http, run, tmp_path):
    server, base = http
    cache = tmp_path / "cache"
    ok = run("train", "--run-dir", tmp_path / "run", f"data.path={base}", f"data.cache_dir={cache}", "train.steps=2",
             *TINY)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert len(list((cache / "shards").glob("*.tar"))) >= 3  # (the epoch's dropped tail may hold a whole small shard)
    server.shutdown()
    server.server_close()
    gone = run("train", "--run-dir", tmp_path / "other", f"data.path={base}", f"data.cache_dir={tmp_path / 'c2'}",
               "data.remote_retries=1", "train.steps=2", *TINY)
    assert gone.returncode == 2, gone.stdout[-2000:] + gone.stderr[-2000:]
    assert f"{base}/manifest.json" in gone.stderr
