"""Many seeds, whole figures: what a seed draws in a simulated session, and a figure's spread
over the seeds."""

from __future__ import annotations

import math
import statistics
from typing import Any

from tuina.operators.phantom import POINT_SIDES, Acupoint, side_of

POSTURES = ("supine", "prone")
# the point-side a posture's sessions press: the phantom's codes mirror a person's (its "left"
# is the side a person's right lies on), so on a person the arm's side of the table holds the
# right leg supine and the left side of the back prone
TARGETS = {"supine": "ST36", "prone": "BL23-R"}
PERSON_TARGETS = {"supine": "ST36-R", "prone": "BL23"}


def posture_of(seed: int) -> str:
    """The posture a seed's sessions lie in, where an evaluation covers both: even seeds
    supine, odd seeds prone."""
    return POSTURES[seed % len(POSTURES)]


def instruction(point: Acupoint) -> str:
    """What a person says to have ``point`` pressed, naming its side when it has two."""
    side = {"left": " on the left", "right": " on the right"}.get(side_of(point), "")
    return f"press {point.pinyin}{side} with moderate pressure"


def target_point(posture: str, body: str = "phantom") -> Acupoint:
    """The acupoint (point-side) the sessions of ``posture`` press on ``body``."""
    code = (PERSON_TARGETS if body == "person" else TARGETS)[posture]
    return next(a for a in POINT_SIDES if a.code == code)


def posture_overrides(posture: str) -> dict[str, dict[str, Any]]:
    """The sim graph's env changes that lie the body in ``posture`` and ask for its point."""
    return {"console": {"INSTRUCTION": instruction(target_point(posture))},
            "grounding": {"BODY_POSTURE": posture}}


def seed_overrides(seed: int) -> dict[str, dict[str, Any]]:
    """A sim graph's env changes for ``seed``: where the phantom lies (seed 0 is the graphs'
    own placement), the wrench sensor's bias, drift and noise, the camera's depth noise and
    the nodes' random draws; one step (the supine point) instead of the graph's routine."""
    return {"world": {"BODY_OFFSET_SEED": seed + 1, "WRENCH_SEED": seed},
            # one step, the supine point's, instead of the graph's routine
            "console": {"INSTRUCTION": instruction(target_point("supine")), "ROUTINE": ""},
            "camera": {"SEED": seed}, "grounding": {"SEED": seed}, "pose-fit": {"SEED": seed},
            "icp-tracker": {"SEED": seed}}


def body_overrides(seed: int, body: str, posture: str) -> dict[str, dict[str, Any]]:
    """Who lies on the table and how: the capsule phantom, or the seed's person (the grounding
    fitting a human body model to it), in ``posture``."""
    world: dict[str, Any] = {"BODY": body, "BODY_POSTURE": posture}
    grounding: dict[str, Any] = {"BODY_POSTURE": posture}
    if body == "person":
        world["PERSON_SEED"] = seed
        grounding["BODY_MODEL"] = "anny"
    return {"world": world, "grounding": grounding}


def merged(*overrides: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Node env overrides merged node by node, later ones winning."""
    out: dict[str, dict[str, Any]] = {}
    for one in overrides:
        for node, env in one.items():
            out[node] = {**out.get(node, {}), **env}
    return out


def spread(values: list[float], worst: str = "max") -> dict[str, Any]:
    """Mean, standard deviation (population) and the worst (``max`` or ``min``) of a figure
    over seeds; the seeds where it was not measured (NaN) are counted apart."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return {"mean": math.nan, "std": math.nan, "worst": math.nan, "n": 0,
                "missing": len(values)}
    return {"mean": statistics.fmean(finite), "std": statistics.pstdev(finite),
            "worst": max(finite) if worst == "max" else min(finite), "n": len(finite),
            "missing": len(values) - len(finite)}


def over_seeds(runs: list[dict[str, Any]], worst: dict[str, str]) -> dict[str, Any]:
    """The figures named in ``worst`` (name: max | min, the bad direction) over the runs of
    several seeds: each figure's mean at the top level, its spread under ``spread``."""
    spreads = {key: spread([run.get(key, math.nan) for run in runs], direction)
               for key, direction in worst.items()}
    return {**{key: s["mean"] for key, s in spreads.items()}, "spread": spreads}


def spread_text(summary: dict[str, Any], key: str, unit: str, digits: int = 2) -> str:
    """"mean ± std (worst w) unit" of one figure of ``over_seeds``."""
    s = summary["spread"][key]
    return (f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} {unit} (worst "
            f"{s['worst']:.{digits}f})")
