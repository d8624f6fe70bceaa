"""Running a command under a time limit, its whole process group killed when it runs over."""

import subprocess
from collections.abc import Sequence

import pytest

from tuina.evaluation.sessions import run_group


def run_bounded(cmd: Sequence[object], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``cmd``'s result, output captured; past ``timeout`` its whole process group (dora's
    daemon and every node it spawned) is killed and the test fails with the end of its output."""
    proc, over = run_group([str(c) for c in cmd], timeout, **kwargs)
    if over:
        pytest.fail(f"{' '.join(map(str, cmd[:3]))} ran past {timeout} s; it printed, last:\n"
                    f"{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}")
    return proc
