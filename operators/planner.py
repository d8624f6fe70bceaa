"""Massage trajectories: approach, contact, press / knead / stroke, retreat, with IK.

Every segment uses min-jerk (quintic) time scaling, so velocity and acceleration are
continuous and zero at the segment ends; each segment's duration is the shortest that
keeps the peak speed, acceleration and jerk within the limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation, Slerp
from tuina.operators.arms import ArmKinematics, PlanningError

__all__ = ["Plan", "PlannerConfig", "PlanningError", "check_workspace", "plan_massage",
           "solve_plan"]


@dataclass(frozen=True)
class PlannerConfig:
    """Phase geometry, timing and limits (m, s, m/s, m/s^2, m/s^3)."""

    standoff_m: float = 0.04
    clearance_m: float = 0.10  # extra height above the standoff on the way in and out
    max_speed: float = 0.12
    max_accel: float = 0.3
    max_jerk: float = 2.0
    press_s: float = 3.0
    stroke_speed: float = 0.02
    knead_radius_m: float = 0.004
    knead_hz: float = 1.0
    dt: float = 0.02


@dataclass
class Plan:
    """Samples of the planned trajectory."""

    t_s: np.ndarray
    positions: np.ndarray  # N x 3
    quaternions: np.ndarray  # N x 4 (x y z w)
    forces_n: np.ndarray
    phases: list[str]
    normals: np.ndarray  # N x 3
    joints: np.ndarray  # N x number of joints (filled by solve_plan)


def min_jerk_duration(distance: float, cfg: PlannerConfig) -> float:
    """Shortest quintic duration within the speed, acceleration and jerk limits."""
    if distance <= 1e-9:
        return 0.0
    return max(1.875 * distance / cfg.max_speed, np.sqrt(5.7735 * distance / cfg.max_accel),
               np.cbrt(60.0 * distance / cfg.max_jerk))


def min_jerk(tau: np.ndarray) -> np.ndarray:
    """Quintic blend 0 -> 1 with zero velocity and acceleration at both ends."""
    tau = np.clip(tau, 0.0, 1.0)
    return tau**3 * (10 - 15 * tau + 6 * tau**2)


def _segment(a: np.ndarray, b: np.ndarray, cfg: PlannerConfig) -> np.ndarray:
    T = min_jerk_duration(float(np.linalg.norm(b - a)), cfg)
    n = max(2, int(np.ceil(T / cfg.dt)) + 1)
    s = min_jerk(np.linspace(0.0, 1.0, n))
    return a + s[:, None] * (b - a)


def _along_path(path: np.ndarray, speed: float, cfg: PlannerConfig) -> np.ndarray:
    """Resample a polyline by min-jerk arc length at a cruise speed."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    T = max(1.875 * arc[-1] / speed, min_jerk_duration(arc[-1], cfg))
    n = max(2, int(np.ceil(T / cfg.dt)) + 1)
    s = min_jerk(np.linspace(0.0, 1.0, n)) * arc[-1]
    return np.stack([np.interp(s, arc, path[:, i]) for i in range(3)], axis=1)


def plan_massage(start_position: np.ndarray, start_quaternion: np.ndarray,
                 target: np.ndarray, normal: np.ndarray, quaternion: np.ndarray,
                 path: np.ndarray, force_n: float, technique: str,
                 cfg: PlannerConfig) -> Plan:
    """Cartesian plan of the tool contact point (base frame), without IK."""
    n = normal / np.linalg.norm(normal)
    above = target + n * (cfg.standoff_m + cfg.clearance_m)
    standoff = target + n * cfg.standoff_m
    pieces: list[tuple[str, np.ndarray, float]] = []
    # approach: over the target first, then down the normal; the tool never nears the body
    lift = start_position.copy()
    lift[2] = max(lift[2], above[2])
    pieces.append(("approach", _segment(start_position, lift, cfg)[:-1], 0.0))
    pieces.append(("approach", _segment(lift, above, cfg)[:-1], 0.0))
    pieces.append(("approach", _segment(above, standoff, cfg), 0.0))
    # contact: the reference sits on the surface; the force loop searches down to it
    n_contact = int(np.ceil(cfg.standoff_m / 0.01 / cfg.dt)) + 1
    pieces.append(("contact", np.repeat(target[None], n_contact, axis=0), force_n))
    n_press = int(np.ceil(cfg.press_s / cfg.dt))
    hold = np.repeat(target[None], n_press, axis=0)
    if technique == "knead":
        t1 = np.cross(n, [1.0, 0.0, 0.0])
        t1 = t1 / np.linalg.norm(t1) if np.linalg.norm(t1) > 1e-6 else np.array([0, 1.0, 0])
        t2 = np.cross(n, t1)
        phase = 2 * np.pi * cfg.knead_hz * np.arange(n_press) * cfg.dt
        ramp = min_jerk(np.arange(n_press) * cfg.dt / 0.5) * min_jerk(
            (n_press - np.arange(n_press)) * cfg.dt / 0.5)
        hold = hold + cfg.knead_radius_m * ramp[:, None] * (
            np.sin(phase)[:, None] * t1 + (1 - np.cos(phase))[:, None] * t2)
    pieces.append(("press", hold, force_n))
    last = target
    if len(path) >= 2:
        stroke = np.vstack([target[None], np.asarray(path)])
        samples = _along_path(stroke, cfg.stroke_speed, cfg)
        pieces.append(("stroke", samples, force_n))
        last = samples[-1]
    out = last + n * (cfg.standoff_m + cfg.clearance_m)
    pieces.append(("retreat", _segment(last, out, cfg), 0.0))

    positions = np.vstack([p for _, p, _ in pieces])
    phases = [name for name, p, _ in pieces for _ in range(len(p))]
    forces = np.concatenate([np.full(len(p), f) for _, p, f in pieces])
    t = np.arange(len(positions)) * cfg.dt
    # orientation turns to the tapping orientation during the first approach segments
    n_turn = len(pieces[0][1]) + len(pieces[1][1])
    key = Rotation.from_quat(np.vstack([start_quaternion, quaternion]))
    slerp = Slerp([0.0, 1.0], key)
    frac = min_jerk(np.arange(len(positions)) / max(n_turn, 1))
    quats = slerp(frac).as_quat()
    quats[quats[:, 3] < 0] *= -1
    normals = np.repeat(n[None], len(positions), axis=0)
    return Plan(t, positions, quats, forces, phases, normals, np.zeros((len(positions), 0)))


def sample(plan_t: np.ndarray, values: np.ndarray, t: float) -> np.ndarray:
    """Linear interpolation of per-sample values at time t (clamped to the ends)."""
    i = int(np.clip(np.searchsorted(plan_t, t) - 1, 0, len(plan_t) - 2))
    span = plan_t[i + 1] - plan_t[i]
    a = np.clip((t - plan_t[i]) / span, 0.0, 1.0) if span > 0 else 0.0
    return (1 - a) * values[i] + a * values[i + 1]


def check_workspace(plan: Plan, lower: np.ndarray, upper: np.ndarray) -> None:
    """PlanningError when any sample of the plan leaves the workspace box."""
    outside = np.any((plan.positions < lower) | (plan.positions > upper), axis=1)
    if outside.any():
        i = int(np.argmax(outside))
        raise PlanningError(
            f"the {plan.phases[i]} phase reaches {np.round(plan.positions[i], 3).tolist()}, "
            f"outside the workspace box {np.round(lower, 3).tolist()}.."
            f"{np.round(upper, 3).tolist()}; move the body or the box (WORKSPACE_MIN/MAX)")


def solve_plan(arm: ArmKinematics, plan: Plan, q0: np.ndarray) -> Plan:
    """Fill plan.joints by IK along the plan; PlanningError where a pose is out of reach."""
    dt = float(plan.t_s[1] - plan.t_s[0]) if len(plan.t_s) > 1 else 0.02
    plan.joints = arm.solve_path(plan.positions, plan.quaternions, q0, dt)
    return plan
