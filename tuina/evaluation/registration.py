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


def seen_depth(clean: np.ndarray, K: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A rendered depth frame as the camera node gives it: D455-like noise, z16 at 1 mm."""
    return quantize_depth(apply_depth_noise(clean, K[0, 0], DepthNoise(), rng))


def offset_from(expected: np.ndarray, body: np.ndarray) -> dict[str, Any]:
    """How far the body lies from its expected pose: x/y (mm) and heading (deg)."""
    offset = np.linalg.inv(expected) @ body
    return {"offset_mm": (offset[:2, 3] * 1e3).round(1).tolist(),
            "offset_deg": round(float(np.degrees(np.arctan2(offset[1, 0], offset[0, 0]))), 1)}


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
            rng = np.random.default_rng([seed, k])
            depth = seen_depth(world.render_posed(q, body).depth, K, rng)
            row: dict[str, Any] = {"placement": k, **offset_from(expected, body)}
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


def person_of(seed: int, k: int) -> tuple[int, str]:
    """The person (PERSON_SEED) and posture of placement ``k`` of ``seed``: a new person each,
    supine and prone in turn."""
    return seed * 1000 + k, ("supine", "prone")[k % 2]


def run_people(placements: int = 20, seed: int = 0, spread_mm: float = 80.0,
               spread_deg: float = 25.0, log: Any = print) -> dict[str, Any]:
    """A different person at each of ``placements`` seeded poses (``person_of``): the grounding
    fits its body model (shape and placement) to the depth, as the node does, and places every
    point-side of the posture by the fitted body; scored on the world's labels."""
    from tuina.body_model import AnnyBody
    from tuina.config import load
    from tuina.operators.body_fit import BodyFitSettings, fit_body, fitted_points
    from tuina.settings.grounding import PARAMS
    from tuina.sim.person import seeded_person
    from tuina.sim.world import MassageWorld, WorldConfig, start_q

    cfg = load("grounding", PARAMS, {})
    expected = placement(tuple(cfg["BODY_POSITION"]), cfg["BODY_YAW_DEG"])
    reported = sim_extrinsics()
    poses = draw_placements(placements, seed, spread_mm, spread_deg,
                            (tuple(cfg["BODY_POSITION"]), cfg["BODY_YAW_DEG"]))
    model = AnnyBody()
    settings = BodyFitSettings()
    rows = []
    for k, body in enumerate(poses):
        person_seed, posture = person_of(seed, k)
        person = seeded_person(person_seed, posture)
        codes = tuple(p.code for p in POINT_SIDES if p.posture == posture)
        world_cfg = WorldConfig(body="person", person_seed=person_seed, posture=posture)
        with MassageWorld(world_cfg) as world:
            K = intrinsics_matrix(*world.intrinsics())
            clean = world.render_posed(start_q(world_cfg), body).depth
        rng = np.random.default_rng([seed, k])
        depth = seen_depth(clean, K, rng)
        row: dict[str, Any] = {"placement": k, "person_seed": person_seed, "posture": posture,
                               "height_m": round(person.height_m, 3),
                               **offset_from(expected, body)}
        started = time.perf_counter()
        try:
            cloud = body_cloud(depth, K, reported, np.asarray(cfg["ROI_MIN"]),
                               np.asarray(cfg["ROI_MAX"]), rng)
            fit = fit_body(cloud, expected, depth, K, reported,
                           lambda shape, posture=posture: model.shaped(shape, posture),
                           model.faces, posture, settings)
        except GroundingError as err:  # a BodyFitError too
            row.update(refused=str(err), seconds=time.perf_counter() - started,
                       points=len(codes))
            rows.append(row)
            log(f"placement {k} (person {person_seed}, {posture}): refused: {err}")
            continue
        row["seconds"] = time.perf_counter() - started
        placed = fitted_points(fit, codes, lambda shape, posture=posture: model.shaped(
            shape, posture), model.faces)
        truth = {c: transform_points(body, person.label(c)[0][None])[0] for c in codes}
        errors, refused, sigmas = {}, [], {}
        for code in codes:
            position, _, sigma_mm = placed[code]
            sigmas[code] = round(float(sigma_mm), 2)
            if sigma_mm > settings.max_point_sigma_mm:
                refused.append(code)
            else:
                errors[code] = round(float(np.linalg.norm(position - truth[code]) * 1e3), 2)
        row.update(fitness=fit.fitness, agreement=fit.agreement, points=len(codes),
                   rivals=len(fit.rivals),
                   errors_mm=errors, refused_points=refused, sigma_mm=sigmas,
                   fitted_phenotype=[round(float(v), 3) for v in fit.shape[:6]])
        rows.append(row)
        worst = max(errors.values(), default=float("nan"))
        log(f"placement {k} (person {person_seed}, {posture}, {person.height_m:.2f} m; "
            f"{row['offset_mm']} mm, {row['offset_deg']} deg): worst {worst:.1f} mm, "
            f"{len(refused)} refused, fitness {fit.fitness:.2f}, agreement "
            f"{fit.agreement:.2f}, {row['seconds']:.1f} s")
    return summarize(rows, None, seed, spread_mm, spread_deg)


def run_seeds(seeds: int, placements: int, spread_mm: float, spread_deg: float,
              log: Any = print, body: str = "phantom") -> dict[str, Any]:
    """``run`` on seeds 0..seeds-1, the rates over all their placements together."""
    one = run_people if body == "person" else run
    runs = [one(placements, seed, spread_mm, spread_deg, log) for seed in range(seeds)]
    rows = [row for r in runs for row in r["rows"]]
    n_points = runs[0]["points"] if body != "person" else None
    return {**summarize(rows, n_points, 0, spread_mm, spread_deg), "seeds": seeds, "body": body}


def summarize(rows: list[dict[str, Any]], n_points: int | None, seed: int, spread_mm: float,
              spread_deg: float) -> dict[str, Any]:
    """Rates over every (placement, point): found, refused, imprecise, wrong. ``n_points``:
    the points of every placement, or None where each row says its own (``points``)."""
    def points(row: dict[str, Any]) -> int:
        return n_points if n_points is not None else row["points"]

    errors = [e for r in rows for e in r.get("errors_mm", {}).values()]
    refused = sum(points(r) for r in rows if "refused" in r) + sum(
        len(r.get("refused_points", [])) for r in rows)
    total = sum(points(r) for r in rows)
    found = sum(e <= FOUND_MM for e in errors)
    wrong = sum(e > WRONG_MM for e in errors)
    return {
        "placements": len(rows), "points": n_points if n_points is not None else total,
        "seed": seed, "spread_mm": spread_mm,
        "spread_deg": spread_deg, "found_mm": FOUND_MM, "wrong_mm": WRONG_MM,
        "rate_found": found / total if total else None,
        "rate_within_5mm": sum(e <= 5.0 for e in errors) / total if total else None,
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

    on = (f"{summary['placements']} people, supine and prone in turn" if summary.get("body")
          == "person" else f"{summary['placements']} placements")
    sides = ("point sides in all" if summary.get("body") == "person" else "point sides")
    return "\n".join([
        f"{on} (seeds 0..{summary.get('seeds', 1) - 1}, up to "
        f"±{summary['spread_mm']:.0f} mm and ±{summary['spread_deg']:.0f} deg) x "
        f"{summary['points']} {sides}",
        "", "| found (<= 3 mm) | within 5 mm | refused | imprecise (3-10 mm) | wrong (> 10 mm) "
        "| mean error | max error |", "|---|---|---|---|---|---|---|",
        f"| {pct(summary['rate_found'])} | {pct(summary['rate_within_5mm'])} | "
        f"{pct(summary['rate_refused'])} | "
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
    parser.add_argument("--body", choices=("phantom", "person"), default="phantom",
                        help="the capsule phantom (registered as a rigid template) or a "
                        "different person at each placement (a body model fitted to the "
                        "depth, shape and placement)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: Any) -> int:
    """``tuina eval registration``."""
    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    summary = run_seeds(args.seeds, args.placements, args.spread_mm, args.spread_deg, log,
                        args.body)
    print(jsontext.dumps(summary) if args.json else table(summary))
    return 1 if summary["rate_wrong"] else 0
