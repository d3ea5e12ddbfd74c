"""What the launcher and the machine tell a process before it starts work: the launcher's mixed
precision, and how many CPU threads this process may use.

Imports only the standard library (and yaml), so ``--dry-run`` and config errors stay fast; torch
is touched only by ``apply_thread_budget``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from gandist.engine.launch import LaunchEnv
from gandist.errors import ConfigError

PRECISIONS = ("no", "bf16", "fp16")


# Launcher precision ------------------------------------------------------------------------------


def explicit_keys(config_path: str | os.PathLike | None, overrides: Sequence[str]) -> set[str]:
    """Dotted keys the user set in the YAML file or as ``key.sub=value`` (not left at default)."""
    keys: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for name, child in node.items():
                walk(child, f"{prefix}{name}.")
        else:
            keys.add(prefix.rstrip("."))

    if config_path is not None and Path(config_path).is_file():
        walk(yaml.safe_load(Path(config_path).read_text()) or {}, "")
    for item in overrides:
        keys.add(item.split("=", 1)[0].strip())
    return keys


def resolve_objective_defaults(cfg: Any, explicitly_set: set[str]) -> str:
    """Fit the defaults to ``train.objective`` and return a notice for the log (or "").

    A semi-supervised GAN needs an unconditional G: D's K class logits carry the labels, and
    most images have none to condition on. ``model.conditional`` defaults to true for the GAN
    objective, so ``train.objective=semisup`` alone would be refused. G's loss is feature
    matching on D's penultimate features, the choice Salimans et al. (2016) made for
    classification and the one docs/semisup.md measures. Each of the two is changed only where
    the user left it at its default; set explicitly, it stays (and validation refuses
    ``model.conditional=true`` with the reason).
    """
    if cfg.train.objective != "semisup":
        return ""
    changed = []
    if cfg.model.conditional and "model.conditional" not in explicitly_set:
        cfg.model.conditional = False
        changed.append("model.conditional=false")
    if cfg.loss.name == "nonsaturating" and "loss.name" not in explicitly_set:
        cfg.loss.name = "feature_matching"
        changed.append("loss.name=feature_matching")
    if not changed:
        return ""
    return ("notice: train.objective=semisup: an unconditional generator trained by feature matching on D's features "
            f"(the labels go to D's class logits); set {' '.join(changed)} (set them yourself to choose otherwise)")


def resolve_mixed_precision(configured: str, explicitly_set: bool, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(precision to use, a note for the log or "") from the config and ``accelerate launch``.

    ``accelerate launch --mixed_precision bf16`` only sets ``ACCELERATE_MIXED_PRECISION`` in the
    workers' environment; gandist passes its own value to ``Accelerator``, so without this the
    flag would be silently ignored. The launcher always sets the variable, to ``no`` when neither
    the flag nor its config file names a precision, so ``no`` from the launcher is no request.
    A config that leaves ``train.mixed_precision`` at its default takes the launcher's value; one
    that sets it to something else is refused (exit 2): which of the two the user meant is unknown.
    """
    env = os.environ if env is None else env
    launcher = env.get("ACCELERATE_MIXED_PRECISION", "").strip().lower()
    if launcher in ("", "no") or launcher == configured:
        return configured, ""
    if launcher not in PRECISIONS:
        raise ConfigError(
            f"ACCELERATE_MIXED_PRECISION={launcher} (accelerate launch --mixed_precision): gandist supports "
            f"{', '.join(PRECISIONS)}"
        )
    if explicitly_set:
        raise ConfigError(
            f"train.mixed_precision={configured} conflicts with the launcher's --mixed_precision {launcher} "
            f"(ACCELERATE_MIXED_PRECISION={launcher}); make them agree or drop one of them"
        )
    return launcher, f"train.mixed_precision={launcher} from the launcher (ACCELERATE_MIXED_PRECISION)"


# Thread budget -----------------------------------------------------------------------------------


def cpus_available(env: Mapping[str, str] | None = None) -> int:
    """CPUs this process may run on: the affinity mask (what taskset, cgroups' cpusets and Slurm's
    task binding leave us), capped by ``SLURM_CPUS_PER_TASK`` when Slurm set it."""
    env = os.environ if env is None else env
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    slurm = env.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cpus = min(cpus, int(slurm))
    return max(cpus, 1)


def thread_budget(env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """(torch intra-op threads for this process, where the number came from).

    An explicit ``OMP_NUM_THREADS`` wins. Otherwise the CPUs we may use, shared among the
    processes a launcher started on this node (``LOCAL_WORLD_SIZE``, else ``WORLD_SIZE``): with torch's default of
    one thread per core, two processes on two cores -- or one beside a busy neighbour -- fight
    over the cores, and small ops ran ~25x slower in a measurement here (a ReLU on a
    64x64x16x16 tensor: 8 ms instead of 0.3 ms).
    """
    env = os.environ if env is None else env
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return int(omp), "OMP_NUM_THREADS"
    cpus = cpus_available(env)
    num_local = max(LaunchEnv.from_environ(env).local_world_size, 1)
    source = "CPU affinity" + (", SLURM_CPUS_PER_TASK" if env.get("SLURM_CPUS_PER_TASK") else "")
    if num_local > 1:
        source += f" / LOCAL_WORLD_SIZE={num_local}"
    return max(cpus // num_local, 1), source


def default_num_workers(env: Mapping[str, str] | None = None) -> int:
    """Loader worker processes per rank when ``data.num_workers`` is -1 (auto): the CPUs beyond the
    training thread budget, shared by the node's ranks, at most 4 (decoding small images in
    blocks is cheap; more workers only add memory)."""
    env = os.environ if env is None else env
    num_local = max(LaunchEnv.from_environ(env).local_world_size, 1)
    spare = cpus_available(env) // num_local - 1
    return max(0, min(spare, 4))


_applied_budget: tuple[int, str] | None = None


def apply_thread_budget() -> tuple[int, str]:
    """Give this process ``thread_budget()`` torch threads; returns it (for the log).

    Before torch is imported, through ``OMP_NUM_THREADS`` (torch reads it when it starts its
    thread pool, and ``--help``/``--dry-run`` never import torch); after, with
    ``torch.set_num_threads``.
    """
    import sys

    global _applied_budget
    if _applied_budget is not None:  # the env var we set below would otherwise read as the user's
        num_threads, source = _applied_budget
    else:
        num_threads, source = _applied_budget = thread_budget()
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.get_num_threads() != num_threads:
            torch.set_num_threads(num_threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(num_threads)
    return num_threads, source
