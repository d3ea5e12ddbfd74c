"""``gandist train``: validate the config, then train (or resume) in a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from gandist.config import Config, changed_keys, config_from_dict, load_config
from gandist.engine.launch import launch_env
from gandist.errors import BadInputError, ConfigError
from gandist.fileio import atomic_write_text
from gandist.run_lock import acquire_run_dir
from gandist.runtime import apply_thread_budget, explicit_keys, resolve_mixed_precision, resolve_objective_defaults
from gandist.size_defaults import data_image_side, resolve_size_defaults

# Keys a resumed run may change without --allow-config-change: training longer is the point
# of resuming; anything else would silently mix two experiments in one run directory.
# The device cache gives the streaming path's batches exactly, so switching it is not a change.
RESUMABLE_CHANGES = {"train.steps", "train.epochs", "data.device_cache", "data.device_cache_max_mb"}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a GAN (resumes when --run-dir has checkpoints)",
        description="Train a GAN. Config: defaults < --config YAML < key.sub=value overrides. "
        "Running the same command again with the same --run-dir resumes from the newest good checkpoint. "
        "Every config key with its type, default and meaning: gandist config (one key: gandist config train.steps).",
    )
    p.add_argument("--config", type=Path, help="experiment YAML (see configs/)")
    p.add_argument("--run-dir", type=Path, default=Path("runs/default"), help="outputs: config.yaml, tb/, ckpt/, samples/ (default: runs/default)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the resolved config, then exit")
    p.add_argument("--allow-config-change", action="store_true", help="resume a run directory whose saved config differs from this one")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. train.steps=2000 model.name=mlp")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    explicit = explicit_keys(args.config, args.overrides)
    cfg.train.mixed_precision, precision_note = resolve_mixed_precision(cfg.train.mixed_precision, "train.mixed_precision" in explicit)
    objective_note = resolve_objective_defaults(cfg, explicit)
    try:
        size_note = resolve_size_defaults(cfg, explicit, lambda: data_image_side(cfg.data))
    except BadInputError as e:
        if not args.dry_run:
            raise
        # A dry run checks a command line, perhaps before its data exists; the run itself stops here.
        size_note = (f"note: the data cannot be read yet ({e}); when it can, its image side may set "
                     "train.batch_size and model.spectral_norm_d (docs/models.md)")
    # The launcher's world size, read before any process group exists (and without torch), so
    # that batch divisibility is checked before any work starts.
    launch = launch_env()
    cfg.validate(world_size=launch.world_size)
    if cfg.eval.extractor == "inception":
        # The first eval comes after minutes of training: check the weights file now.
        from gandist.metrics.inception_file import check_weights_file

        check_weights_file(cfg.metrics.inception_weights)
    if launch.is_main:
        for note in (precision_note, objective_note, size_note):
            if note:
                print(note, flush=True)
        num_threads, source = apply_thread_budget()
        print(f"torch threads per process: {num_threads} ({source})", flush=True)
        print("resolved config:\n" + _indent(cfg.to_yaml()), flush=True)
    if args.dry_run:
        return 0
    # Rank 0 owns the run directory for the whole run: a second start on it exits 2.
    lock = acquire_run_dir(args.run_dir) if launch.is_main else None
    try:
        check_run_dir_config(args.run_dir, cfg, allow_change=args.allow_config_change)
        if launch.is_main:
            write_config(args.run_dir, cfg)

        from gandist.train import train

        return train(cfg, args.run_dir)
    finally:
        if lock is not None:
            lock.release()


def write_config(run_dir: Path, cfg: Config) -> None:
    """``run_dir/config.yaml``, atomically; a full disk or a read-only directory is exit 2 naming the file."""
    path = run_dir / "config.yaml"
    try:
        atomic_write_text(path, cfg.to_yaml())
    except OSError as e:
        raise BadInputError(f"--run-dir {run_dir}: cannot write {path}: {e.strerror or e}") from None


def check_run_dir_config(run_dir: Path, cfg: Config, allow_change: bool) -> None:
    """Refuse to resume a run directory with a different config (other than a longer budget)."""
    saved_path = run_dir / "config.yaml"
    has_checkpoints = any((run_dir / "ckpt").glob("step_*/MANIFEST.json")) if (run_dir / "ckpt").is_dir() else False
    if not (saved_path.is_file() and has_checkpoints):
        return
    try:
        saved = config_from_dict(yaml.safe_load(saved_path.read_text()) or {}).to_dict()
    except ConfigError as e:
        if allow_change:
            return
        raise ConfigError(f"{saved_path}: saved config does not load with this gandist ({e}); pass --allow-config-change to resume anyway") from None
    changed = [k for k in changed_keys(saved, cfg.to_dict()) if k not in RESUMABLE_CHANGES]
    if changed and not allow_change:
        raise ConfigError(
            f"--run-dir {run_dir} holds a run with another config; changed keys: {', '.join(changed)}. "
            "Only train.steps/train.epochs may change on resume; use a new --run-dir or pass --allow-config-change"
        )


def _indent(text: str) -> str:
    return "".join("  " + line + "\n" for line in text.splitlines())
