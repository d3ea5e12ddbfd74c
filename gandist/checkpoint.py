"""Atomic, verified checkpoints: the files of one save, their manifest, finding the newest good one.

Layout of one checkpoint (``DIR/ckpt/step_00000123/``)::

    model.pt        G, D and EMA-G state_dicts (full, unsharded)          rank 0
    optim.pt        both optimizers and the grad scaler (None under zero)  rank 0
    trainer.pt      step counters, lr, data stream position of rank 0      rank 0
    rank/00000.pt   RNG states and data stream position, one per rank      every rank
    sharded/        backend state written by every rank (DeepSpeed ZeRO)   every rank
    config.yaml     the resolved config
    model.json      model name, ModelSpec and class names (to sample without the config)
    MANIFEST.json   format version, sizes and sha256 of every file above; written last

A save writes into ``step_X.tmp/``, fsyncs every file, writes MANIFEST.json, renames the
folder into place and only then replaces ``ckpt/latest`` (tmp + fsync + rename). Old
checkpoints are pruned after that commit, so a save killed at any point leaves the previous
checkpoints and ``latest`` intact. Only tensors and plain data are stored: every file loads
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from gandist.version import __version__
from gandist.errors import CheckpointError, GandistError
from gandist.fileio import atomic_write_bytes, fsync_dir, sha256_file

FORMAT_VERSION = 1
STEP_DIR = re.compile(r"^step_(\d{8})$")
MANIFEST = "MANIFEST.json"


class CheckpointSaveError(GandistError):
    """A save failed (disk full, permissions); the previous checkpoint is untouched."""


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


# Tensor files ----------------------------------------------------------------------------------------


class _WriteErrorRecorder:
    """File wrapper for torch.save: torch swallows the OSError of a failed write (disk full)
    and raises "RuntimeError: unexpected pos 704 vs 598" instead, which names neither the
    cause nor the file. This keeps the OSError so the caller can report it."""

    def __init__(self, f):
        self.f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.f.flush()


def save_tensor_file(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        writer = _WriteErrorRecorder(f)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise
        f.flush()
        os.fsync(f.fileno())


def load_tensor_file(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a damaged file
        raise CheckpointError(f"cannot load checkpoint file {path}: {e}") from None


def _describe_os_error(e: OSError, path: Path) -> str:
    if e.errno == errno.ENOSPC:
        return f"disk full while writing checkpoint {path}: {e}"
    if e.errno == errno.EDQUOT:
        return f"disk quota exceeded while writing checkpoint {path}: {e}"
    return f"could not write checkpoint {path}: {e}"


class Checkpointer:
    """Saves and finds checkpoints under ``run_dir/ckpt``; collective calls run on every rank."""

    def __init__(self, run_dir: Path, engine, keep: int, keep_every_steps: int = 0):
        self.root = Path(run_dir) / "ckpt"
        self.engine = engine
        self.keep = keep
        self.keep_every_steps = keep_every_steps

    # Save -------------------------------------------------------------------------------------
    def save(self, step: int, write_main: Callable[[Path], None], write_rank: Callable[[Path], None]) -> Path:
        """Write checkpoint ``step`` on every rank.

        ``write_main(tmp_dir)`` runs on rank zero and writes the full state files;
        ``write_rank(tmp_dir)`` runs on every rank (per-rank RNG, sharded engine state).
        Raises CheckpointSaveError on every rank if any rank failed; nothing is committed then.
        """
        final = self.root / step_dir_name(step)
        tmp = self.root / (step_dir_name(step) + ".tmp")
        error: str | None = None
        if self.engine.is_main:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                for stale in self.root.glob("step_*.tmp"):
                    shutil.rmtree(stale, ignore_errors=True)
                tmp.mkdir()
            except OSError as e:
                error = _describe_os_error(e, tmp)
        self.engine.barrier()
        if error is None:
            try:
                write_rank(tmp)
                if self.engine.is_main:
                    write_main(tmp)
            except OSError as e:
                error = _describe_os_error(e, tmp)
            except Exception as e:  # noqa: BLE001 - every rank must reach the agreement below, or the others hang
                error = f"could not write checkpoint {tmp}: {type(e).__name__}: {e}"
        self._raise_if_any_failed(error, tmp)

        if self.engine.is_main:
            try:
                self._commit(tmp, final, step)
            except OSError as e:
                error = _describe_os_error(e, tmp)
        self._raise_if_any_failed(error, tmp)
        if self.engine.is_main:
            self.prune()
        self.engine.barrier()
        return final

    def _raise_if_any_failed(self, error: str | None, tmp: Path) -> None:
        if self.engine.all_agree(error is None):
            return
        if self.engine.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        previous = self.read_latest_name()
        kept = f"; the previous checkpoint {previous} is intact" if previous else ""
        raise CheckpointSaveError((error or f"another rank failed to write checkpoint {tmp}") + kept)

    def _commit(self, tmp: Path, final: Path, step: int) -> None:
        files = {}
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            rel = path.relative_to(tmp).as_posix()
            files[rel] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        manifest = {
            "format_version": FORMAT_VERSION,
            "step": step,
            "world_size": self.engine.world_size,
            "versions": _versions(),
            "files": files,
        }
        atomic_write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
        for sub in {p.parent for p in tmp.rglob("*") if p.is_file()}:
            fsync_dir(sub)
        if final.exists():  # an earlier save of this step that was not the newest: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(self.root)
        atomic_write_bytes(self.root / "latest", (final.name + "\n").encode())

    def prune(self) -> None:
        """Delete committed checkpoints beyond the newest ``keep`` (and not kept permanently)."""
        committed = self.committed()
        for step, path in committed[: -self.keep]:
            if self.keep_every_steps and step % self.keep_every_steps == 0:
                continue
            shutil.rmtree(path, ignore_errors=True)

    def mark_best(self, path: Path, info: dict) -> None:
        """Keep the committed checkpoint ``path`` as ``ckpt/best`` (hard links: no extra space),
        with ``BEST.json`` (step, metric); the previous best is replaced only once the new one is complete."""
        if not self.engine.is_main:
            return
        best, tmp, old = self.root / "best", self.root / "best.tmp", self.root / "best.old"
        self._recover_best()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(path, tmp, copy_function=_link_or_copy)
        atomic_write_bytes(tmp / "BEST.json", json.dumps(info, indent=1).encode())
        shutil.rmtree(old, ignore_errors=True)
        if best.exists():
            os.replace(best, old)
        os.replace(tmp, best)
        fsync_dir(self.root)
        shutil.rmtree(old, ignore_errors=True)

    def _recover_best(self) -> None:
        """A save killed between moving ``best`` aside and moving the new one in leaves only
        ``best.old``: it is still the best, so put it back (rank zero; the others only read)."""
        best, old = self.root / "best", self.root / "best.old"
        if self.engine.is_main and not best.exists() and (old / "BEST.json").is_file():
            os.replace(old, best)
            fsync_dir(self.root)

    def read_best(self) -> dict | None:
        self._recover_best()
        try:
            return json.loads((self.root / "best" / "BEST.json").read_text())
        except (OSError, ValueError):
            return None

    # Find and verify ----------------------------------------------------------------------------
    def committed(self) -> list[tuple[int, Path]]:
        """Committed checkpoints (a MANIFEST.json exists), oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            m = STEP_DIR.match(path.name)
            if m and path.is_dir() and (path / MANIFEST).is_file():
                found.append((int(m.group(1)), path))
        return sorted(found)

    def read_latest_name(self) -> str | None:
        try:
            name = (self.root / "latest").read_text(encoding="utf-8").strip()
        except (OSError, ValueError):  # missing, or not text
            return None
        return name if STEP_DIR.match(name) else None

    @staticmethod
    def step_of(path: Path | None) -> int:
        """The step of a checkpoint folder (0 for None: a fresh run starts at step 0)."""
        return int(STEP_DIR.match(path.name).group(1)) if path is not None else 0

    def agree_on_resumable(self, log: Callable[[str], None] = print) -> Path | None:
        """The checkpoint every rank resumes from (None: start fresh). Rank zero verifies and
        picks; the others take its answer, so no rank resumes from another step. Raises
        CheckpointError on every rank when checkpoints exist but none verifies."""
        found, error = None, None
        if self.engine.is_main:
            try:
                found = self.find_resumable(log=log)
            except CheckpointError as e:
                error = e
        # -1: start fresh, -2: rank zero found no usable checkpoint (it raises the details).
        step = self.engine.broadcast_int(-2 if error else -1 if found is None else self.step_of(found))
        if error is not None:
            raise error
        if step == -2:
            raise CheckpointError(f"no usable checkpoint in {self.root} (rank 0 reports the details)")
        return None if step == -1 else self.root / step_dir_name(step)

    def find_resumable(self, log: Callable[[str], None] = print) -> Path | None:
        """The newest checkpoint that verifies, or None when there is none at all.

        ``latest`` is tried first; a stale or garbage ``latest`` falls back to scanning. A
        damaged checkpoint is skipped with a message naming it. Raises CheckpointError when
        checkpoints exist but none verifies.
        """
        candidates = [path for _, path in reversed(self.committed())]
        latest = self.read_latest_name()
        if latest and (self.root / latest) in candidates:
            candidates.remove(self.root / latest)
            candidates.insert(0, self.root / latest)
        elif (self.root / "latest").exists() and candidates:
            log(f"warning: {self.root / 'latest'} does not name a committed checkpoint; scanning {self.root}")
        problems = []
        for path in candidates:
            problem = verify_checkpoint(path)
            if problem is None:
                if problems:
                    log(f"warning: using checkpoint {path} instead")
                return path
            problems.append(f"{path}: {problem}")
            log(f"warning: skipping damaged checkpoint {path}: {problem}")
        if problems:
            raise CheckpointError("no usable checkpoint in " + str(self.root) + ":\n  " + "\n  ".join(problems))
        return None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not supported
        shutil.copy2(src, dst)


def verify_checkpoint(path: Path) -> str | None:
    """None when every file matches MANIFEST.json; otherwise what is wrong.

    The manifest and model.json are read as untrusted data: a wrong shape is a damaged
    checkpoint (the caller falls back to the previous one), never a traceback."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"unreadable {MANIFEST} ({e})"
    if not isinstance(manifest, dict):
        return f"{MANIFEST} is not a JSON object"
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        return f"format version {version!r} is newer than this gandist understands ({FORMAT_VERSION}); upgrade gandist"
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return f"{MANIFEST} lists no files"
    step = manifest.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"{MANIFEST} has no valid step ({step!r:.50})"
    for rel, meta in files.items():
        rel_path = Path(rel)
        if rel_path.is_absolute() or ".." in rel_path.parts or not rel:
            return f"{MANIFEST} names a file outside the checkpoint: {rel!r:.200}"
        if not (isinstance(meta, dict) and isinstance(meta.get("bytes"), int) and isinstance(meta.get("sha256"), str)):
            return f"{MANIFEST} entry {rel!r:.200} lacks bytes/sha256"
        file = path / rel
        if not file.is_file():
            return f"missing file {rel}"
        if file.stat().st_size != meta["bytes"]:
            return f"{rel} has {file.stat().st_size} bytes, manifest says {meta['bytes']} (truncated?)"
        if sha256_file(file) != meta["sha256"]:
            return f"{rel} does not match its sha256 in {MANIFEST} (corrupted)"
    if "model.json" in files:
        from gandist.model_info import parse_model_info

        try:
            parse_model_info((path / "model.json").read_bytes(), "model.json")
        except CheckpointError as e:
            return str(e)
    return None


def read_manifest(path: Path) -> dict:
    return json.loads((Path(path) / MANIFEST).read_text())


def _versions() -> dict[str, str]:
    versions = {"gandist": __version__, "torch": torch.__version__, "python": sys.version.split()[0]}
    deepspeed = sys.modules.get("deepspeed")  # recorded when the run used it; importing it costs seconds
    if deepspeed is not None:
        versions["deepspeed"] = deepspeed.__version__
    return versions


def resolve_checkpoint(run_dir_or_ckpt: str | os.PathLike, log: Callable[[str], None] = print) -> Path:
    """A run directory, its ``ckpt/`` folder or one ``step_*`` folder -> a verified checkpoint folder."""
    path = Path(run_dir_or_ckpt)
    if (path / MANIFEST).is_file():
        problem = verify_checkpoint(path)
        if problem:
            raise CheckpointError(f"checkpoint {path} is damaged: {problem}")
        return path
    run_dir = path.parent if path.name == "ckpt" else path
    if not run_dir.exists():
        raise CheckpointError(f"run directory not found: {run_dir}")

    class _Local:  # verification needs no engine: no collectives here
        is_main, world_size, rank = True, 1, 0

    found = Checkpointer(run_dir, _Local(), keep=2).find_resumable(log=log)
    if found is None:
        raise CheckpointError(f"no checkpoint in {run_dir / 'ckpt'} (has the run saved one yet?)")
    return found
