"""``tuina eval registration``: the body where it lies, not where it is expected.

The phantom is placed at seeded poses around the grounding node's expected pose (up to
``--spread-mm`` and ``--spread-deg``, drawn uniformly as the world's BODY_OFFSET_SEED draws
them) and seen by the sim graph's camera:
the true mount (the drawing plus its mount error), D455-like depth noise, z16 at 1 mm, the
arm at its start pose. Grounding registers the phantom as the node does, from the node's
expected pose, with the extrinsics the camera node reports (``calibration/sim_d455.json``).
Every acupoint side the node would press (ball fit and approach checked on the model) is
then scored on the truth: its grounded position's distance to the true one.

Per placement and point: found (within ``FOUND_MM``), refused (a GroundingError: an error
event, no target, no motion), imprecise (between), or wrong (further than ``WRONG_MM``: a
confident wrong target, the outcome that must never happen).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from tuina import jsontext
from tuina.calibrate import sim_extrinsics
from tuina.operators.geometry import intrinsics_matrix, transform_points
from tuina.operators.grounding import (
    GroundingError,
    approach_problem,
    ball_fit_problem,
    body_cloud,
    register_phantom,
)
from tuina.operators.phantom import POINT_SIDES, placement
from tuina.operators.sensor import DepthNoise, apply_depth_noise, quantize_depth
from tuina.sim.world import body_offset_drawn

FOUND_MM, WRONG_MM = 3.0, 10.0


def pressable(cfg: dict[str, Any]) -> list[Any]:
    """The point sides the grounding node would accept on the body model."""
    return [p for p in POINT_SIDES
            if not ball_fit_problem(p, cfg["BALL_RADIUS_M"], cfg["BALL_CLEARANCE_M"])
            and not approach_problem(p, cfg["BALL_RADIUS_M"], cfg["APPROACH_CLEARANCE_M"],
                                     cfg["APPROACH_LENGTH_M"])]


def draw_placements(n: int, seed: int, spread_mm: float, spread_deg: float,
                    expected: tuple[tuple[float, float, float], float]) -> list[np.ndarray]:
    """``n`` body poses around the ``expected`` position and heading: x, y and yaw uniform
    within the spreads, as the world draws them for BODY_OFFSET_SEED ``seed * 1000 + k``."""
    (x, y, z), yaw = expected
    poses = []
    for k in range(n):
        dx, dy, dyaw = body_offset_drawn(seed * 1000 + k, spread_mm, spread_deg)
        poses.append(placement((x + dx, y + dy, z), yaw + dyaw))
    return poses


def run(placements: int = 20, seed: int = 0, spread_mm: float = 80.0, spread_deg: float = 25.0,
        log: Any = print) -> dict[str, Any]:
    """Ground every pressable point on ``placements`` seeded body poses; the outcome counts."""
    from tuina.config import load
    from tuina.settings.grounding import PARAMS
    from tuina.sim.world import MassageWorld, WorldConfig, start_q

    cfg = load("grounding", PARAMS, {})
    expected = placement(tuple(cfg["BODY_POSITION"]), cfg["BODY_YAW_DEG"])
    reported = sim_extrinsics()
    points = pressable(cfg)
    world_cfg = WorldConfig()
    poses = draw_placements(placements, seed, spread_mm, spread_deg,
                            (tuple(cfg["BODY_POSITION"]), cfg["BODY_YAW_DEG"]))
    rows = []
    with MassageWorld(world_cfg) as world:
        K = intrinsics_matrix(*world.intrinsics())
        q = start_q(world_cfg)
        for k, body in enumerate(poses):
            depth = world.render_posed(q, body).depth
            rng = np.random.default_rng([seed, k])
            depth = quantize_depth(apply_depth_noise(depth, K[0, 0], DepthNoise(), rng))
            offset = np.linalg.inv(expected) @ body
            row: dict[str, Any] = {
                "placement": k, "offset_mm": (offset[:2, 3] * 1e3).round(1).tolist(),
                "offset_deg": round(float(np.degrees(np.arctan2(offset[1, 0], offset[0, 0]))), 1)}
            started = time.perf_counter()
            try:
                cloud = body_cloud(depth, K, reported, np.asarray(cfg["ROI_MIN"]),
                                   np.asarray(cfg["ROI_MAX"]), rng)
                fit = register_phantom(cloud, expected, depth, K, reported)
            except GroundingError as err:
                row.update(refused=str(err), seconds=time.perf_counter() - started)
                rows.append(row)
                log(f"placement {k}: refused: {err}")
                continue
            row["seconds"] = time.perf_counter() - started
            truth = transform_points(body, np.array([p.position for p in points]))
            found = transform_points(fit.base_T_body, np.array([p.position for p in points]))
            errors = np.linalg.norm(found - truth, axis=1) * 1e3
            row.update(fitness=fit.fitness, agreement=fit.agreement,
                       errors_mm=dict(zip([p.code for p in points], errors.round(2).tolist(),
                                          strict=True)))
            rows.append(row)
            log(f"placement {k} ({row['offset_mm']} mm, {row['offset_deg']} deg): worst "
                f"{errors.max():.1f} mm, fitness {fit.fitness:.2f}, agreement "
                f"{fit.agreement:.2f}, {row['seconds']:.2f} s")
    return summarize(rows, len(points), seed, spread_mm, spread_deg)


def run_seeds(seeds: int, placements: int, spread_mm: float, spread_deg: float,
              log: Any = print) -> dict[str, Any]:
    """``run`` on seeds 0..seeds-1, the rates over all their placements together."""
    runs = [run(placements, seed, spread_mm, spread_deg, log) for seed in range(seeds)]
    rows = [row for r in runs for row in r["rows"]]
    return {**summarize(rows, runs[0]["points"], 0, spread_mm, spread_deg), "seeds": seeds}


def summarize(rows: list[dict[str, Any]], n_points: int, seed: int, spread_mm: float,
              spread_deg: float) -> dict[str, Any]:
    """Rates over every (placement, point): found, refused, imprecise, wrong."""
    errors = [e for r in rows for e in r.get("errors_mm", {}).values()]
    refused = sum(n_points for r in rows if "refused" in r)
    total = len(rows) * n_points
    found = sum(e <= FOUND_MM for e in errors)
    wrong = sum(e > WRONG_MM for e in errors)
    return {
        "placements": len(rows), "points": n_points, "seed": seed, "spread_mm": spread_mm,
        "spread_deg": spread_deg, "found_mm": FOUND_MM, "wrong_mm": WRONG_MM,
        "rate_found": found / total if total else None,
        "rate_refused": refused / total if total else None,
        "rate_imprecise": (len(errors) - found - wrong) / total if total else None,
        "rate_wrong": wrong / total if total else None,
        "error_mm_mean": float(np.mean(errors)) if errors else None,
        "error_mm_max": float(np.max(errors)) if errors else None,
        "seconds_max": max(r["seconds"] for r in rows) if rows else None,
        "rows": rows,
    }


def table(summary: dict[str, Any]) -> str:
    """The outcome rates as a Markdown table."""
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.1%}"

    return "\n".join([
        f"{summary['placements']} placements (seeds 0..{summary.get('seeds', 1) - 1}, up to "
        f"±{summary['spread_mm']:.0f} mm and ±{summary['spread_deg']:.0f} deg) x "
        f"{summary['points']} point sides",
        "", "| found (<= 3 mm) | refused | imprecise (3-10 mm) | wrong (> 10 mm) | mean error "
        "| max error |", "|---|---|---|---|---|---|",
        f"| {pct(summary['rate_found'])} | {pct(summary['rate_refused'])} | "
        f"{pct(summary['rate_imprecise'])} | {pct(summary['rate_wrong'])} | "
        f"{summary['error_mm_mean'] or 0:.2f} mm | {summary['error_mm_max'] or 0:.2f} mm |"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tuina eval registration`` options."""
    parser.add_argument("--placements", type=int, default=20, help="seeded body poses")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1, each with its own "
                        "--placements (every placement is already its own draw of the body, "
                        "the depth noise and the holes; default 1)")
    parser.add_argument("--spread-mm", type=float, default=80.0,
                        help="largest offset in x and y from the expected pose")
    parser.add_argument("--spread-deg", type=float, default=25.0,
                        help="largest heading offset from the expected pose")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: Any) -> int:
    """``tuina eval registration``."""
    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    summary = run_seeds(args.seeds, args.placements, args.spread_mm, args.spread_deg, log)
    print(jsontext.dumps(summary) if args.json else table(summary))
    return 1 if summary["rate_wrong"] else 0
