"""``tuina eval force``: contact scenarios of the sim graph, scored against the truth.

- press: "press Zusanli with moderate pressure", 6 N for 6 s on a still body;
- stroke: a 10 cm stroke from Zusanli at 2 cm/s and 6 N;
- moving: the press while the body shifts 20 mm (the tracker following it);
- prone press: "press Shenshu with moderate pressure" (BL23, lower back), the body prone.

Each runs the whole sim graph under dora, on every seed (``--seeds``: where the body lies, the
wrench sensor's bias and noise, the camera's noise). The session node scores the world's true
normal contact force at the target, never the controller's own reading: its RMS error
against the target over the settled press (the first 0.8 s left out) and over the whole
contact (from the first touch), the overshoot at first contact, the cap; the true contact
point against the planned stroke. Every figure is the mean over the seeds, with its standard
deviation and worst case under ``spread``.
The loop's rate, period jitter and latency are the robot node's own wall-clock account
(``sim_clock_*``: the same from the command stamps in simulated time, which the world keeps
only roughly while it renders on the same cores).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tuina.evaluation.seeds import (
    body_overrides,
    instruction,
    merged,
    over_seeds,
    seed_overrides,
    spread_text,
    target_point,
)
from tuina.evaluation.sessions import evaluate_graph, run_session

SCENARIOS: dict[str, dict[str, dict[str, Any]]] = {
    "press": {"planner": {"PRESS_S": 6.0}},
    "stroke": {"console": {"INSTRUCTION": "stroke Zusanli with moderate pressure"},
               "grounding": {"STROKE_LENGTH_M": 0.10},
               "planner": {"PRESS_S": 1.5, "STROKE_SPEED": 0.02}},
    "moving": {"planner": {"PRESS_S": 6.0},
               "world": {"BODY_MOTION": "shift", "BODY_MOTION_TRIGGER": "contact",
                         "BODY_MOTION_START_S": 1.5, "BODY_MOTION_DURATION_S": 2.0,
                         "BODY_MOTION_TRANSLATION_MM": "12,-16,0"}},
    # the body prone, a Back-Shu point on the lower back
    "prone press": {"console": {"INSTRUCTION": "press Shenshu with moderate pressure"},
                    "grounding": {"BODY_POSTURE": "prone"}, "planner": {"PRESS_S": 6.0}},
}


def scenario_overrides(name: str, seed: int, body: str = "phantom") -> dict[str, dict[str, Any]]:
    """The sim graph's env changes for scenario ``name`` on ``seed``: the seed's draws, who lies
    on the table (in the scenario's posture), the posture's point on that body (a scenario may
    ask for its own), the scenario's own."""
    scenario = SCENARIOS[name]
    posture = scenario.get("grounding", {}).get("BODY_POSTURE", "supine")
    return merged(seed_overrides(seed), body_overrides(seed, body, posture),
                  {"console": {"INSTRUCTION": instruction(target_point(posture, body))}},
                  scenario, {"session": {"TIMEOUT_S": 90}})


def run_seed(graph: Path, seed: int, folder: Path, log: Any = print, body: str = "phantom"
             ) -> dict[str, Any]:
    """Every scenario's session summary for one seed (on the phantom, or on the seed's person),
    and the headline numbers."""
    rows: dict[str, dict[str, Any]] = {}
    for name in SCENARIOS:
        log(f"session: {name}, seed {seed}, {body}")
        rows[name] = run_session(graph, scenario_overrides(name, seed, body), folder,
                                 f"{name}-{seed}", name)
        s = rows[name]
        log(f"  true force {s['force_mean_n']:.2f} N (RMS error {s['force_rms_error_n']:.2f} "
            f"settled, {s['force_rms_error_whole_n']:.2f} whole contact), overshoot "
            f"{s['overshoot_n']:.2f} N, max {s['max_force_n']:.1f} N, "
            f"{_loop(s, 'command_hz'):.0f} Hz, ok {s['ok']}"
            + (f": {'; '.join(s['problems'])}" if s.get("problems") else ""))
    return {
        "seed": seed,
        "rms_error_n": rows["press"]["force_rms_error_n"],
        "rms_error_whole_n": rows["press"]["force_rms_error_whole_n"],
        "overshoot_n": float(np.nanmax([r["overshoot_n"] for r in rows.values()])),
        "max_force_n": float(max(r["max_force_n"] for r in rows.values())),
        "stroke_rms_error_n": rows["stroke"]["stroke_rms_error_n"],
        "stroke_tracking_mm": rows["stroke"]["stroke_tracking_mm"],
        "stroke_tracking_max_mm": rows["stroke"]["stroke_tracking_max_mm"],
        "moving_rms_error_n": rows["moving"]["force_rms_error_n"],
        "moving_rms_error_whole_n": rows["moving"]["force_rms_error_whole_n"],
        "prone_rms_error_n": rows["prone press"]["force_rms_error_n"],
        "prone_rms_error_whole_n": rows["prone press"]["force_rms_error_whole_n"],
        # the loop in wall time, as the robot node measured it
        "control_hz": float(min(_loop(r, "command_hz") for r in rows.values())),
        "period_jitter_p99_ms": float(max(_loop(r, "state_jitter_p99_ms")
                                          for r in rows.values())),
        "command_jitter_p99_ms": float(max(_loop(r, "command_jitter_p99_ms")
                                           for r in rows.values())),
        "latency_p99_ms": float(max(_loop(r, "latency_p99_ms") for r in rows.values())),
        # the same in simulated time, which the world keeps only roughly while it renders
        "sim_clock_hz": float(min(r["sim_clock_command_hz"] for r in rows.values())),
        "sim_clock_jitter_p99_ms": float(max(r["sim_clock_period_jitter_p99_ms"]
                                             for r in rows.values())),
        "sessions_ok": all(r["ok"] for r in rows.values()),
        "scenarios": rows,
    }


WORST = {"rms_error_n": "max", "rms_error_whole_n": "max", "overshoot_n": "max",
         "max_force_n": "max", "stroke_rms_error_n": "max", "stroke_tracking_mm": "max",
         "stroke_tracking_max_mm": "max", "moving_rms_error_n": "max",
         "moving_rms_error_whole_n": "max", "prone_rms_error_n": "max",
         "prone_rms_error_whole_n": "max", "control_hz": "min",
         "period_jitter_p99_ms": "max", "command_jitter_p99_ms": "max",
         "latency_p99_ms": "max", "sim_clock_hz": "min", "sim_clock_jitter_p99_ms": "max"}


def run(graph: Path, log: Any = print, seeds: int = 3, body: str = "phantom") -> dict[str, Any]:
    """The scenarios on seeds 0..seeds-1 (``body``: the phantom, or a person per seed): each
    figure's mean over the seeds, its spread (mean, standard deviation, worst) and every seed's
    own."""
    with tempfile.TemporaryDirectory(prefix="tuina-eval-force-") as tmp:
        runs = [run_seed(graph, seed, Path(tmp), log, body) for seed in range(seeds)]
    return {"seeds": seeds, "body": body, **over_seeds(runs, WORST),
            "sessions_ok": all(r["sessions_ok"] for r in runs),
            "scenarios": runs[0]["scenarios"], "per_seed": runs}


def _loop(row: dict[str, Any], key: str) -> float:
    return float(row.get("loop", {}).get(key, float("nan")))


def _n(value: float, digits: int = 2) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def table(summary: dict[str, Any]) -> str:
    """The result as a Markdown table plus the headline numbers."""
    lines = ["| scenario | force (N, mean) | RMS error (N) | overshoot (N) | max (N) | stroke "
             "RMS (N) | stroke path (mm, mean / max) | loop (Hz) | period / command jitter "
             "p99 (ms) | latency p99 (ms) | ok |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary["scenarios"].items():
        lines.append(f"| {name} | {_n(s['force_mean_n'])} | {_n(s['force_rms_error_n'])} | "
                     f"{_n(s['overshoot_n'])} | {_n(s['max_force_n'], 1)} | "
                     f"{_n(s['stroke_rms_error_n'])} | {_n(s['stroke_tracking_mm'])} / "
                     f"{_n(s['stroke_tracking_max_mm'])} | {_loop(s, 'command_hz'):.0f} | "
                     f"{_loop(s, 'state_jitter_p99_ms'):.2f} / "
                     f"{_loop(s, 'command_jitter_p99_ms'):.2f} | "
                     f"{_loop(s, 'latency_p99_ms'):.2f} | {s['ok']} |")
    lines += ["", f"over {summary['seeds']} seeds (the first seed's sessions above): true force "
              f"RMS error settled {spread_text(summary, 'rms_error_n', 'N')}, whole contact "
              f"{spread_text(summary, 'rms_error_whole_n', 'N')}; stroke "
              f"{spread_text(summary, 'stroke_rms_error_n', 'N')}; moving body "
              f"{spread_text(summary, 'moving_rms_error_n', 'N')}; prone press "
              f"{spread_text(summary, 'prone_rms_error_n', 'N')}", "",
              f"steady press RMS error {summary['rms_error_n']:.2f} N, overshoot "
              f"{summary['overshoot_n']:.2f} N, max {summary['max_force_n']:.1f} N; stroke RMS "
              f"{summary['stroke_rms_error_n']:.2f} N, path {summary['stroke_tracking_mm']:.2f} mm;"
              f" moving RMS {summary['moving_rms_error_n']:.2f} N; loop "
              f"{summary['control_hz']:.0f} Hz, period jitter p99 "
              f"{summary['period_jitter_p99_ms']:.2f} ms, command jitter p99 "
              f"{summary['command_jitter_p99_ms']:.2f} ms (wall clock)"]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tuina eval force`` options."""
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--graph", default="dataflows/sim.yml", help="the sim graph evaluated")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3, not 5: four "
                        "sessions a seed, ~4 min on two cores)")
    parser.add_argument("--body", choices=("phantom", "person"), default="phantom",
                        help="who lies on the table: the capsule phantom, or a different person "
                        "per seed (PERSON_SEED), the grounding fitting a human body model")


def main(args: Any) -> int:
    """``tuina eval force``: print the table, or one JSON object with --json."""
    def evaluate(graph: Path, log: Any) -> dict[str, Any]:
        return run(graph, log, args.seeds, args.body)

    return evaluate_graph("force", args, evaluate, table, (RuntimeError,))
