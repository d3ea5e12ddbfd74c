"""A launched worker whose ranks agreed to stop non-zero ends at once, so the launcher sees
every rank's own exit code instead of SIGTERMing the rank still in interpreter teardown."""

import subprocess
import sys

SCRIPT = """
import atexit, sys
from gandist.leave_together import exit_process, mark_agreed_stop
atexit.register(lambda: print("teardown ran", flush=True))
print("before", flush=True)  # flushed output survives os._exit
mark_agreed_stop(int(sys.argv[1]))
exit_process(int(sys.argv[2]))
"""


def run(world_size: int, code: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, str(world_size), str(code)], capture_output=True, text=True, timeout=60)


def test_agreed_non_zero_stop_skips_teardown_and_keeps_the_code():
    p = run(2, 3)
    assert p.returncode == 3 and "before" in p.stdout and "teardown ran" not in p.stdout


def test_a_single_process_or_a_zero_code_exits_the_usual_way():
    for world_size, code in ((1, 3), (2, 0)):
        p = run(world_size, code)
        assert p.returncode == code and "teardown ran" in p.stdout, (world_size, code, p)
