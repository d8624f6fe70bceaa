"""``tuina eval safety``: fault injection in the simulated world, mid-press.

Each scenario is a real run of the sim graph under dora. The fault comes FAULT_AT_S after the
press starts (a node killed or stalled, the e-stop) or FAULT_AFTER_CONTACT_S after the first
contact (the world's sensor, camera and link drills, a body jerk). Everything is scored on
the world's truth (its TRUTH_LOG: the true contact force and end-effector track at 500 Hz),
never on what the controller measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from tuina import jsontext
from tuina.evaluation.seeds import (
    POSTURES,
    merged,
    posture_of,
    posture_overrides,
    seed_overrides,
)
from tuina.evaluation.sessions import evaluate_graph, session_graph, unknown_choice

FAULT_AT_S = 1.0  # after "phase press" is printed
RELEASED_N = 0.5  # a true force below this is out of contact
# the body frame's z is the base's (tuina.sim.world): up, toward a tool pressing down
JERK_TOWARD_TOOL_MM = "0, 0, 50"

# name -> (env overrides by node, injection from outside: (kind, node) or None)
SCENARIOS: dict[str, tuple[dict[str, dict[str, Any]], tuple[str, str] | None]] = {
    "kill force-controller": ({}, ("kill", "force-controller")),
    "kill icp-tracker": ({}, ("kill", "icp-tracker")),
    "kill planner": ({}, ("kill", "planner")),
    "kill camera": ({}, ("kill", "camera")),
    "stall force-controller 300 ms": ({}, ("stall", "force-controller")),
    "camera frozen": ({"world": {"FAULT": "camera_freeze"}}, None),
    "depth all NaN": ({"world": {"FAULT": "depth_nan"}}, None),
    "wrench NaN": ({"world": {"FAULT": "wrench_nan"}}, None),
    "wrench zero": ({"world": {"FAULT": "wrench_zero"}}, None),
    "wrench spike +20 N": ({"world": {"FAULT": "wrench_spike"}}, None),
    "wrench bias +5 N": ({"world": {"FAULT": "wrench_bias"}}, None),
    "body jerk 5 cm toward the tool": ({"world": {
        "BODY_MOTION": "jerk", "BODY_MOTION_TRIGGER": "contact", "BODY_MOTION_START_S": 1.5,
        "BODY_MOTION_TRANSLATION_MM": JERK_TOWARD_TOOL_MM}}, None),
    "operator e-stop": ({}, ("estop", "")),
    "robot link dropped": ({"world": {"FAULT": "link_drop"}}, None),
}


def truth_metrics(truth: dict[str, np.ndarray], fault_s: float,
                  hold_s: float | None) -> dict[str, float]:
    """From the world's truth after a fault at sim time ``fault_s``: the true force just
    before it, the peak after it, the time until the force stays below RELEASED_N (inf: still
    pressed when the world closed), and how far the tool moves once the robot holds (from
    ``hold_s``, the time of its ``released`` event)."""
    t, force, ee = truth["t"], np.linalg.norm(truth["force"], axis=1), truth["ee"]
    after = t >= fault_s
    row = {"before_fault_n": float(force[~after][-1]) if (~after).any() else 0.0,
           "peak_after_n": math.nan, "release_s": math.nan, "hold_motion_mm": math.nan}
    if not after.any():
        return row
    row["peak_after_n"] = float(force[after].max())
    pressed = np.flatnonzero(after & (force >= RELEASED_N))
    if len(pressed) and pressed[-1] == len(t) - 1:
        row["release_s"] = math.inf
    else:
        row["release_s"] = float(t[pressed[-1] + 1] - fault_s) if len(pressed) else 0.0
    if hold_s is not None and (t >= hold_s).any():
        held = ee[t >= hold_s]
        row["hold_motion_mm"] = float(np.max(np.linalg.norm(held - held[0], axis=1)) * 1000)
    return row


def _pids(node: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", f"tuina-{node}"], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def inject(kind: str, node: str) -> None:
    """Kill or stall a node's process, or press the operator's e-stop."""
    if kind == "estop":
        exe = Path(sys.executable).parent / "tuina"
        subprocess.run([str(exe), "estop", "--reason", "safety drill"], capture_output=True,
                       timeout=30)
        return
    pids = _pids(node)
    if not pids:
        raise RuntimeError(f"no process of node {node} to {kind}")
    for pid in pids:
        os.kill(pid, signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
    if kind == "stall":
        time.sleep(0.3)
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def run_scenario(graph: Path, folder: Path, name: str, log: Any = print,
                 seed: int = 0, posture: str | None = None) -> dict[str, Any]:
    """One drill on one seed, the body in ``posture`` (default: the seed's): the session's
    verdict and the truth's account of the release."""
    overrides, injection = SCENARIOS[name]
    posture = posture or posture_of(seed)
    slug = "".join(c if c.isalnum() else "-" for c in name) + f"-{seed}-{posture}"
    truth_path = folder / f"{slug}.npz"
    env_overrides = merged(seed_overrides(seed), posture_overrides(posture), overrides, {
        "world": {"TRUTH_LOG": str(truth_path)}, "planner": {"PRESS_S": 6.0},
        "session": {"TIMEOUT_S": 90}})
    path = session_graph(graph, env_overrides, folder, slug)
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.Popen([str(bin_dir / "dora"), "run", str(path), "--stop-after", "150s"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    injected_wall: float | None = None
    try:
        if injection is not None:
            deadline = time.monotonic() + 120
            while not any("phase press" in line for line in list(lines)):
                if proc.poll() is not None or time.monotonic() > deadline:
                    said = [line.strip() for line in lines if " stdout " in line]
                    raise RuntimeError(f"{name}: the session never pressed: "
                                       + " | ".join(said[-8:]))
                time.sleep(0.05)
            time.sleep(FAULT_AT_S)
            injected_wall = time.time()
            inject(*injection)
        proc.wait(timeout=200)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=5)
    summary_file = folder / slug / "summary.json"
    if not truth_path.exists():
        raise RuntimeError(f"{name}: the world wrote no truth log: " + " | ".join(lines[-5:]))
    truth = dict(np.load(truth_path))
    summary = jsontext.figures(json.loads(summary_file.read_text()), absent=("released_t",)) \
        if summary_file.exists() else {}
    if injected_wall is not None:
        fault_s = float(truth["t"][np.searchsorted(truth["wall"], injected_wall)
                                   .clip(0, len(truth["t"]) - 1)])
    else:
        fault_s = float(truth["fault_s"])
        if name.startswith("body jerk"):
            fault_s = float(truth["first_contact_s"]) + 1.5
    row = {"scenario": name, "seed": seed, "posture": posture, "fault_s": fault_s,
           **truth_metrics(truth, fault_s, summary.get("released_t")),
           "faults": summary.get("faults", []), "ok": summary.get("ok"),
           "problems": summary.get("problems", ["no summary written"]),
           "exit_code": proc.returncode,
           "robot_lines": [line.strip() for line in lines if "tuina-franka:" in line][:6]}
    log(f"  {name}: peak {row['peak_after_n']:.1f} N, released in {row['release_s']:.2f} s, "
        f"hold motion {row['hold_motion_mm']:.2f} mm, faults {row['faults']}")
    return row


def run(graph: Path, log: Any = print, names: list[str] | None = None,
        seeds: int = 1, posture: str | None = None) -> dict[str, Any]:
    """Every scenario asked for (all by default) on seeds 0..seeds-1 (where the body lies,
    the sensors' noise, its posture unless ``posture`` is given), and the worst of them
    all."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="tuina-eval-safety-") as tmp:
        for seed in range(seeds):
            for name in names or list(SCENARIOS):
                log(f"scenario: {name}, seed {seed}, {posture or posture_of(seed)}")
                rows.append(run_scenario(graph, Path(tmp), name, log, seed, posture))
    finite = [r["release_s"] for r in rows]
    return {"seeds": seeds, "scenarios": rows,
            "worst_peak_after_n": max(r["peak_after_n"] for r in rows),
            "worst_release_s": max(finite),
            "worst_hold_motion_mm": max((r["hold_motion_mm"] for r in rows
                                         if not math.isnan(r["hold_motion_mm"])),
                                        default=math.nan),
            "any_ok": any(r["ok"] for r in rows)}


def table(result: dict[str, Any]) -> str:
    """One Markdown row per scenario."""
    lines = ["| scenario | seed (posture) | true force before (N) | peak after the fault (N) | "
             "released "
             "in (s) | tool motion while holding (mm) | faults | session ok |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["scenarios"]:
        lines.append(f"| {r['scenario']} | {r['seed']} ({r['posture']}) | "
                     f"{r.get('before_fault_n', math.nan):.1f} | "
                     f"{r['peak_after_n']:.1f} | {r['release_s']:.2f} | "
                     f"{r['hold_motion_mm']:.2f} | {', '.join(r['faults']) or '-'} | "
                     f"{r['ok']} |")
    lines.append(f"\nworst: peak {result['worst_peak_after_n']:.1f} N, released in "
                 f"{result['worst_release_s']:.2f} s, tool motion while holding "
                 f"{result['worst_hold_motion_mm']:.2f} mm")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tuina eval safety`` options."""
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--graph", default="dataflows/sim.yml", help="the sim graph evaluated")
    parser.add_argument("--scenario", action="append",
                        help="run only this scenario (repeatable); default: all")
    parser.add_argument("--seeds", type=int, default=2,
                        help="seeds 0..N-1, even ones supine, odd ones prone (default 2, not 5: "
                        "a seed is fourteen sessions, ~17 min on two cores)")
    parser.add_argument("--posture", choices=POSTURES,
                        help="every seed's body in this posture (default: the seed's)")


def main(args: Any) -> int:
    """``tuina eval safety``: the table, or one JSON object with --json."""
    if unknown_choice("safety", "scenario", args.scenario, list(SCENARIOS)):
        return 2
    names = args.scenario or None
    return evaluate_graph("safety", args, lambda graph, log: run(graph, log, names,
                                                                 args.seeds, args.posture),
                          table,
                          (RuntimeError,))
