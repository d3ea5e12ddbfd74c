"""Error types that map onto the CLI's exit codes.

Exit codes (a contract for scripts and the Slurm wrappers):
0 success, 1 other failures, 2 bad usage or bad input (config, data, checkpoint),
EXIT_PREEMPTED (3) when a run saved a checkpoint and stopped because a preemption signal asked it to,
and EXIT_INTERRUPTED (130) after Ctrl-C (the first saves a checkpoint first, a second stops at once).
"""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
# 3 is free of shell meaning (126+ are the shell's, 128+N are signals) and of Python's own 1/2.
EXIT_PREEMPTED = 3
# Ctrl-C (SIGINT): 128 + 2, the code a shell reports for a process that SIGINT ended.
EXIT_INTERRUPTED = 130


class GandistError(Exception):
    """Base class of errors gandist reports without a traceback."""

    exit_code = EXIT_FAILURE


class BadInputError(GandistError, ValueError):
    """The user's input is wrong: config, data, arguments or a checkpoint. Exit code 2."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInputError):
    """A config field is unknown, of the wrong type, or has an invalid value."""


class DataError(BadInputError):
    """A dataset, shard or manifest is missing or malformed."""


class CheckpointError(BadInputError):
    """A checkpoint is missing, incomplete or damaged."""


class PeerLost(GandistError):
    """A collective failed because another rank died or stopped answering (exit code 1)."""


class TrainingDiverged(GandistError):
    """A loss became non-finite: training stops and keeps the last good checkpoint."""
