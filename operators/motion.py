"""Scripted rigid body motions of the phantom, as functions of simulation time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

KINDS = ("none", "shift", "drift", "jerk")
TRIGGERS = ("time", "contact")
JERK_S = 0.1  # a flinch: the whole motion within 100 ms


@dataclass(frozen=True)
class BodyMotionScript:
    """One scripted motion.

    shift: a smooth (min-jerk) move to ``translation_m`` / ``rotation_deg`` over
    ``duration_s``; drift: constant velocity reaching them after ``duration_s`` and going
    on; jerk: the same move as a shift within ``JERK_S`` (a patient flinching). Rotations
    are about the body origin, xyz Euler (deg). ``start_s`` counts from the start of the
    simulation, or from the first tool contact when ``trigger`` is "contact".
    """

    kind: str = "none"
    start_s: float = 0.0
    duration_s: float = 1.0
    translation_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    trigger: str = "time"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"body motion {self.kind!r} unknown; use one of {', '.join(KINDS)}")
        if self.trigger not in TRIGGERS:
            raise ValueError(f"body motion trigger {self.trigger!r} unknown; use one of "
                             f"{', '.join(TRIGGERS)}")


def progress(script: BodyMotionScript, t: float) -> float:
    """Fraction of the scripted motion applied at time ``t`` (may exceed 1 for drift)."""
    if script.kind == "none" or t < script.start_s:
        return 0.0
    duration = JERK_S if script.kind == "jerk" else script.duration_s
    tau = (t - script.start_s) / max(duration, 1e-9)
    if script.kind == "drift":
        return tau
    tau = min(tau, 1.0)
    return tau**3 * (10 - 15 * tau + 6 * tau**2)


def body_offset(script: BodyMotionScript, t: float) -> np.ndarray:
    """4x4 motion of the body at time ``t``, applied in the body's nominal frame."""
    s = progress(script, t)
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", np.multiply(script.rotation_deg, s),
                                    degrees=True).as_matrix()
    T[:3, 3] = np.multiply(script.translation_m, s)
    return T
