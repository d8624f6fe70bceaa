"""A node's start: its env validated once (one line naming the fix, else exit), one-line
errors, its scheduling priority."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from tuina.config import ConfigError, Param, load


def fail(node: str, message: str, code: int = 2) -> None:
    """Print one clear error line and exit."""
    print(f"tuina-{node}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def raise_priority(node: str, nice: int, realtime_priority: int = 0) -> None:
    """Run this node at a higher scheduling priority: the SCHED_FIFO real-time class at
    ``realtime_priority`` (1-99; the threads the node starts later, dora's and franky's,
    inherit it), else a lower nice value. Without the permission for it, say so in one line
    and carry on at the next best priority."""
    if realtime_priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(realtime_priority))
            return
        except OSError as err:
            print(f"tuina-{node}: cannot set real-time priority {realtime_priority} "
                  f"({err.strerror}); grant CAP_SYS_NICE or run as root for a steadier loop",
                  file=sys.stderr, flush=True)
    if nice < 0:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError as err:
            print(f"tuina-{node}: cannot set nice {nice} ({err.strerror}); running at the "
                  "normal priority (grant CAP_SYS_NICE or run as root for a steadier loop)",
                  file=sys.stderr, flush=True)


PRIORITY_PARAMS = [
    Param("NICE", "int", 0, "-", "scheduling priority of this loop: a negative nice value "
          "(needs root or CAP_SYS_NICE) keeps its period steady on a busy machine",
          low=-20, high=19),
    Param("REALTIME_PRIORITY", "int", 0, "-", "SCHED_FIFO priority of this loop (1-99, needs "
          "root or CAP_SYS_NICE; takes precedence over NICE): the period stays steady while "
          "other nodes load every core; 0: off", low=0, high=99),
]  # the env keys raise_priority reads, for the loop nodes' PARAMS


OPEN3D_PARAMS = [
    Param("OPEN3D_THREADS", "int", 1, "-", "CPU threads open3d may use: with 1 its sums run in "
          "one order, so a replay repeats this node's outputs bit for bit; 0: every core "
          "(ICP 4.5 instead of 6.9 ms on an idle machine)", low=0),
]  # for the nodes that call open3d: pass the value to o3d.utility.set_max_threads


def configure(node: str, params: Sequence[Param]) -> dict[str, Any]:
    """Load and validate the node's env: block, or exit with one line naming the fix."""
    try:
        return load(node, params)
    except ConfigError as err:
        fail(node, str(err))
        raise  # unreachable; keeps type checkers calm
