"""The control loop over dora: robot state out, command back, on this machine.

    .venv/bin/python benchmarks/control_loop.py [--graph dataflows/sim.yml] [--runs 1]
        [--realtime N] [--nice N]

Runs the sim graph's press session (6 s at 6 N) and reads the robot node's own account of
the loop, in wall time: how often states went out and commands came back, the period
jitter (p99 of |period - median|) and the latency from a robot state to the command computed
from it (robot -> force-controller -> robot, two dora hops and one control step).
This is a measurement, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tuina.evaluation.sessions import robot_loop, session_graph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", default="dataflows/sim.yml")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--nice", type=int, default=None,
                        help="run the robot and force-controller nodes at this nice value")
    parser.add_argument("--realtime", type=int, default=None,
                        help="their SCHED_FIFO priority (0: off; default: the graph's)")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    rows = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="tuina-bench-loop-") as tmp:
            overrides = {"planner": {"PRESS_S": 6.0}, "console": {
                "INSTRUCTION": "press Zusanli with moderate pressure", "ROUTINE": ""}}
            for key, value in (("NICE", args.nice), ("REALTIME_PRIORITY", args.realtime)):
                if value is not None:
                    for node in ("robot", "force-controller"):
                        overrides.setdefault(node, {})[key] = value
            path = session_graph(Path(args.graph), overrides, Path(tmp), f"run-{run}")
            subprocess.run([str(bin_dir / "dora"), "run", str(path), "--stop-after", "150s"],
                           env=env, capture_output=True, text=True, timeout=300)
            loop = robot_loop(sorted((Path(tmp) / "out").glob("*")))
            if not loop:
                raise RuntimeError(f"no loop summary from the robot node under {tmp}/out")
            rows.append(loop)
    print("| run | states (Hz) | commands (Hz) | state / command period jitter p99 (ms) | "
          "state -> command latency p50 / p99 (ms) |")
    print("|---|---|---|---|---|")
    for i, r in enumerate(rows):
        print(f"| {i} | {r.get('state_hz', 0):.1f} | {r.get('command_hz', 0):.1f} | "
              f"{r.get('state_jitter_p99_ms', float('nan')):.2f} / "
              f"{r.get('command_jitter_p99_ms', float('nan')):.2f} | "
              f"{r.get('latency_p50_ms', float('nan')):.2f} / "
              f"{r.get('latency_p99_ms', float('nan')):.2f} |")


if __name__ == "__main__":
    main()
