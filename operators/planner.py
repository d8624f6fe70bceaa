"""Massage trajectories: approach, contact, press / knead / stroke, retreat, with IK.

Every segment uses min-jerk (quintic) time scaling, so velocity and acceleration are
continuous and zero at the segment ends; each segment's duration is the shortest that
keeps the peak speed, acceleration and jerk within the limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pinocchio as pin
from scipy.spatial.transform import Rotation, Slerp


class PlanningError(ValueError):
    """No safe trajectory exists for this target."""


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
    joints: np.ndarray  # N x 7


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
    return Plan(t, positions, quats, forces, phases, normals, np.zeros((len(positions), 7)))


class ToolIK:
    """Damped least-squares IK of the tool contact frame with joint limits and a posture task."""

    def __init__(self, urdf: str, flange_frame: str, flange_T_tool: np.ndarray,
                 posture: np.ndarray, damping: float = 1e-3, posture_gain: float = 0.1):
        self.model = pin.buildModelFromXML(urdf)
        self.data = self.model.createData()
        flange = self.model.getFrameId(flange_frame)
        frame = self.model.frames[flange]
        self.tool = self.model.addFrame(pin.Frame(
            "massage_tool", frame.parentJoint, flange, frame.placement * pin.SE3(flange_T_tool),
            pin.FrameType.OP_FRAME))
        self.data = self.model.createData()
        self.posture = np.asarray(posture, float)
        self.damping = damping
        self.posture_gain = posture_gain
        self.lower = self.model.lowerPositionLimit
        self.upper = self.model.upperPositionLimit

    def forward(self, q: np.ndarray) -> pin.SE3:
        """Tool pose in the base frame."""
        pin.framesForwardKinematics(self.model, self.data, q)
        return self.data.oMf[self.tool].copy()

    def solve(self, target: pin.SE3, q0: np.ndarray, iterations: int = 100,
              tol: float = 1e-4) -> np.ndarray:
        """Joint solution near q0; raises PlanningError when the pose is out of reach."""
        q = np.asarray(q0, float).copy()
        for _ in range(iterations):
            current = self.forward(q)
            err = pin.log6(current.actInv(target)).vector
            if np.linalg.norm(err) < tol:
                return q
            J = pin.computeFrameJacobian(self.model, self.data, q, self.tool, pin.LOCAL)
            JJt = J @ J.T + self.damping * np.eye(6)
            dq = J.T @ np.linalg.solve(JJt, err)
            null = np.eye(len(q)) - np.linalg.pinv(J) @ J
            dq += null @ (self.posture_gain * (self.posture - q))
            q = np.clip(q + dq, self.lower, self.upper)
        raise PlanningError(f"no IK solution for tool position {np.round(target.translation, 3)}"
                            f" (residual {np.linalg.norm(err):.3g}); the target is out of reach")

    def solve_plan(self, plan: Plan, q0: np.ndarray) -> Plan:
        """Fill plan.joints, warm-starting each sample from the previous one."""
        q = np.asarray(q0, float)
        for i in range(len(plan.t_s)):
            target = pin.SE3(Rotation.from_quat(plan.quaternions[i]).as_matrix(),
                             plan.positions[i])
            q = self.solve(target, q)
            plan.joints[i] = q
        return plan


def sample(plan_t: np.ndarray, values: np.ndarray, t: float) -> np.ndarray:
    """Linear interpolation of per-sample values at time t (clamped to the ends)."""
    i = int(np.clip(np.searchsorted(plan_t, t) - 1, 0, len(plan_t) - 2))
    span = plan_t[i + 1] - plan_t[i]
    a = np.clip((t - plan_t[i]) / span, 0.0, 1.0) if span > 0 else 0.0
    return (1 - a) * values[i] + a * values[i + 1]


# franky's end-effector frame on an FR3: 0.1034 m past the flange, turned -45 deg about z
FR3_FLANGE = "link8"
FR3_FLANGE_TO_EE_M = 0.1034
FR3_POSTURE = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785])  # null-space posture (rad)


def fr3_flange_T_tool(tool_length_m: float) -> np.ndarray:
    """The tool contact frame in the FR3 flange frame, ``tool_length_m`` past franky's EE."""
    return pin.SE3(pin.rpy.rpyToMatrix(0.0, 0.0, -np.pi / 4),
                   np.array([0.0, 0.0, FR3_FLANGE_TO_EE_M + tool_length_m])).homogeneous


def fr3_tool_ik(tool_length_m: float) -> ToolIK:
    """IK of the FR3's tool contact point, with the default null-space posture."""
    from franky_sim.urdf import FR3_URDF

    return ToolIK(FR3_URDF, FR3_FLANGE, fr3_flange_T_tool(tool_length_m), FR3_POSTURE)

