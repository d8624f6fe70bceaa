"""``tuina eval coverage``: every atlas acupoint, on each side of the body where it is
bilateral (the point-sides), asked for in a real sim session each, the body lying in the
point's posture (supine for the front, prone for the back).

Per point-side and seed (where the body lies, the sensors' noise, every RANSAC), one short press
("press <pinyin> with moderate pressure", "... on the right" for a right one) under dora,
scored on the world's truth by the session: **pressed** (the true contact point within
WRONG_MM of the acupoint), **refused** (no contact; the first error line is the reason a
person reads), or **wrong** (pressed farther than WRONG_MM from the acupoint, or pressed for
another point than the one asked for: the outcome that must never happen). A pressed point is
*within bounds* when it is within 3 mm and 10 deg of the acupoint and its mean force within
0.5 N of the target. A session that crashes or writes no summary ends the evaluation with an
error: it has no outcome, and is never counted as a refusal.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuina.evaluation.seeds import body_overrides, instruction, merged, seed_overrides
from tuina.evaluation.sessions import (
    OverrideRefused,
    evaluate_graph,
    run_session,
    unknown_choice,
)
from tuina.operators.phantom import POINT_SIDES, Acupoint

WRONG_MM = 10.0
BOUNDS = {"acupoint_error_mm": 3.0, "normal_error_deg": 10.0, "force_error_n": 0.5}
PRESS_S = 2.0
TOUCHED_S = 0.2  # less contact than this is no press
REASON_NODES = ("grounding", "pose-fit", "planner", "icp-tracker", "force-controller", "camera")


def outcome(summary: dict[str, Any], asked: str) -> dict[str, Any]:
    """pressed | refused | wrong, the errors, and the reason of a refusal, from the summary of
    a session that asked for the point-side ``asked``. A session that touched the body for
    another point than the one asked for is wrong wherever it pressed."""
    error = summary.get("acupoint_error_mm", math.nan)
    force_error = abs(summary.get("force_mean_n", math.nan) - summary.get("force_target_n",
                                                                         math.nan))
    touched = summary.get("contact_s", 0.0) >= TOUCHED_S
    problems = summary.get("problems", [])
    grounded = summary.get("target", "")
    row = {"acupoint_error_mm": error, "normal_error_deg": summary.get("normal_error_deg",
                                                                     math.nan),
           "force_error_n": force_error, "faults": summary.get("faults", []),
           "grounded": grounded, "reason": "", "ok": summary.get("ok", False)}
    if not touched:
        row["outcome"] = "refused"
        # a node's own line (not the robot's echo of it, not the session's scores)
        own = [p for p in problems if p.split(":")[0] in REASON_NODES]
        row["reason"] = (own or problems or ["no contact"])[0]
    elif grounded != asked:
        row["outcome"] = "wrong"
        row["reason"] = f"asked for {asked}, grounded {grounded or 'nothing'}"
    elif not error <= WRONG_MM:
        row["outcome"] = "wrong"
    else:
        row["outcome"] = "pressed"
    row["within_bounds"] = row["outcome"] == "pressed" and all(
        row[key] <= bound for key, bound in BOUNDS.items())
    return row


class SessionFailed(RuntimeError):
    """A coverage session crashed or wrote no summary: the evaluation has no result for it,
    which is never counted as a refusal."""


def point_overrides(point: Acupoint, seed: int, body: str = "phantom"
                    ) -> dict[str, dict[str, Any]]:
    """The sim graph's env changes for one session of ``point`` on ``seed``, on the phantom or
    on the seed's person lying in the point's posture."""
    return merged(seed_overrides(seed), body_overrides(seed, body, point.posture), {
        "console": {"INSTRUCTION": instruction(point)},
        "planner": {"PRESS_S": PRESS_S}})


def run(graph: Path, log: Any = print, seeds: int = 1,
        codes: list[str] | None = None,
        session: Callable[..., dict[str, Any]] = run_session,
        body: str = "phantom") -> dict[str, Any]:
    """Every point-side asked for (all by default), on seeds 0..seeds-1, and the counts.
    Raises ``SessionFailed`` on a session that wrote no summary, ``OverrideRefused`` on an
    override the graph cannot take."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="tuina-eval-coverage-") as tmp:
        for seed in range(seeds):
            for point in POINT_SIDES:
                if codes and point.code not in codes:
                    continue
                name = f"{point.code}-{seed}"
                try:
                    summary = session(graph, point_overrides(point, seed, body), Path(tmp),
                                      name, name)
                except OverrideRefused:
                    raise
                except RuntimeError as err:
                    raise SessionFailed(f"{point.code} seed {seed}: {err}") from None
                row = {"code": point.code, "pinyin": point.pinyin, "posture": point.posture,
                       "seed": seed, **outcome(summary, point.code)}
                rows.append(row)
                log(f"  {point.code} {point.pinyin} seed {seed}: {row['outcome']}"
                    + (f" ({row['reason']})" if row["reason"] else
                       f", {row['acupoint_error_mm']:.1f} mm, {row['normal_error_deg']:.1f} "
                       f"deg, force off by {row['force_error_n']:.2f} N"))
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("pressed", "refused", "wrong")}
    pressed = [r["acupoint_error_mm"] for r in rows if r["outcome"] == "pressed"]
    return {"seeds": seeds, "body": body, "rows": rows, **counts,
            "within_bounds": sum(r["within_bounds"] for r in rows),
            "pressed_error_mean_mm": sum(pressed) / len(pressed) if pressed else math.nan,
            "pressed_error_worst_mm": max(pressed) if pressed else math.nan}


def table(result: dict[str, Any]) -> str:
    """One Markdown row per point and seed, then the counts."""
    lines = ["| point | posture | seed | outcome | acupoint error (mm) | normal error (deg) | "
             "force off (N) | reason |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['code']} {r['pinyin']} | {r['posture']} | {r['seed']} | "
                     f"{r['outcome']} | "
                     f"{r['acupoint_error_mm']:.1f} | {r['normal_error_deg']:.1f} | "
                     f"{r['force_error_n']:.2f} | {r['reason'] or '-'} |")
    lines.append(f"\n{result['pressed']} pressed ({result['within_bounds']} within 3 mm, "
                 f"10 deg and 0.5 N; {result['pressed_error_mean_mm']:.1f} mm mean, "
                 f"{result['pressed_error_worst_mm']:.1f} mm worst), {result['refused']} "
                 f"refused, {result['wrong']} wrong; seeds 0..{result['seeds'] - 1}, on the "
                 f"{result['body']}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tuina eval coverage`` options."""
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--graph", default="dataflows/sim.yml", help="the sim graph")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (default 1)")
    parser.add_argument("--body", choices=("phantom", "person"), default="phantom",
                        help="who lies on the table: the capsule phantom or a person per "
                        "seed (seed N: PERSON_SEED N)")
    parser.add_argument("--point", action="append",
                        help="only this acupoint code (repeatable); default: all")


def main(args: Any) -> int:
    """``tuina eval coverage``: the table, or one JSON object with --json."""
    if unknown_choice("coverage", "acupoint code", args.point, [p.code for p in POINT_SIDES]):
        return 2
    return evaluate_graph("coverage", args, lambda graph, log: run(graph, log, args.seeds,
                                                                   args.point, body=args.body),
                          table, (SessionFailed,))
