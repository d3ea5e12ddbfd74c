"""``gandist train``: validate the config, then train (or resume) in a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from gandist.config import Config, changed_keys, config_from_dict, load_config
from gandist.engine.launch import launch_env
from gandist.errors import ConfigError
from gandist.fileio import atomic_write_text

# Keys a resumed run may change without --allow-config-change: training longer is the point
# of resuming; anything else would silently mix two experiments in one run directory.
RESUMABLE_CHANGES = {"train.steps", "train.epochs"}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a GAN (resumes when --run-dir has checkpoints)",
        description="Train a GAN. Config: defaults < --config YAML < key.sub=value overrides. "
        "Running the same command again with the same --run-dir resumes from the newest good checkpoint.",
    )
    p.add_argument("--config", type=Path, help="experiment YAML (see configs/)")
    p.add_argument("--run-dir", type=Path, default=Path("runs/default"), help="outputs: config.yaml, tb/, ckpt/, samples/ (default: runs/default)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the resolved config, then exit")
    p.add_argument("--allow-config-change", action="store_true", help="resume a run directory whose saved config differs from this one")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. train.steps=2000 model.name=mlp")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    # The launcher's world size, read before any process group exists (and without torch), so
    # that batch divisibility is checked before any work starts.
    launch = launch_env()
    cfg.validate(world_size=launch.world_size)
    if launch.is_main:
        print("resolved config:\n" + _indent(cfg.to_yaml()), flush=True)
    if args.dry_run:
        return 0
    check_run_dir_config(args.run_dir, cfg, allow_change=args.allow_config_change)
    if launch.is_main:
        args.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.run_dir / "config.yaml", cfg.to_yaml())

    from gandist.train import train

    return train(cfg, args.run_dir)


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
