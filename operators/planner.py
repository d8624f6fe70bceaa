"""Massage trajectories: approach, contact, press / knead / stroke, retreat, with IK.

Every segment uses min-jerk (quintic) time scaling, so velocity and acceleration are
continuous and zero at the segment ends; each segment's duration is the shortest that
keeps the peak speed, acceleration and jerk within the limits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pinocchio as pin
from scipy.spatial.transform import Rotation, Slerp
from tuina.operators.arms import ArmKinematics, PlanningError
from tuina.operators.geometry import (
    depth_to_points,
    outside_capsules,
    polyline_distances,
    transform_points,
)

__all__ = ["ClearanceConfig", "Plan", "PlannerConfig", "PlanningError", "ReachConfig",
           "ReachedPlan", "ball_offset", "check_workspace", "collision_problem", "plan_massage",
           "plan_reachable", "pose_problem", "seen_points", "solve_plan", "tool_candidates"]


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
    transit: int = 0  # samples of the move to the point above the target (before it)


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
                 cfg: PlannerConfig, approach: np.ndarray | None = None) -> Plan:
    """Cartesian plan of the tool contact point (base frame), without IK. The tool comes
    and goes along ``approach`` (default: the normal; a tilted ball along its own axis)."""
    n = normal / np.linalg.norm(normal)
    way = n if approach is None else np.asarray(approach, float) / np.linalg.norm(approach)
    above = target + way * (cfg.standoff_m + cfg.clearance_m)
    standoff = target + way * cfg.standoff_m
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
    out = last + way * (cfg.standoff_m + cfg.clearance_m)
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
    return Plan(t, positions, quats, forces, phases, normals, np.zeros((len(positions), 0)),
                transit=n_turn)


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


def solve_with_transit(arm: ArmKinematics, plan: Plan, q0: np.ndarray, q_target: np.ndarray,
                       cfg: PlannerConfig, lower: np.ndarray, upper: np.ndarray,
                       dip_m: float = 0.01) -> Plan:
    """The plan with its move to the point above the target made in joint space.

    From that point on, the Cartesian plan is solved starting from the target's own joint
    solution's branch; the move there is a min-jerk joint interpolation from ``q0``, slow
    enough for the tool's speed limit. PlanningError when that move leaves the workspace box
    or dips more than ``dip_m`` below the lower of its two ends (both well above the body).
    """
    k = plan.transit
    dt = float(plan.t_s[1] - plan.t_s[0]) if len(plan.t_s) > 1 else cfg.dt
    above = pin.SE3(Rotation.from_quat(plan.quaternions[k]).as_matrix(), plan.positions[k])
    rest = arm.solve_path(plan.positions[k:], plan.quaternions[k:], arm.solve(above, q_target),
                          dt)
    delta = rest[0] - np.asarray(q0, float)
    duration = max(k * dt, float(np.max(1.875 * np.abs(delta) / (0.2 * arm.velocity_limit))))
    for _ in range(4):
        joints = np.asarray(q0, float) + min_jerk(
            np.linspace(0.0, 1.0, max(2, int(np.ceil(duration / dt)) + 1)))[:, None] * delta
        poses = [arm.forward(q) for q in joints]
        positions = np.array([pose.translation for pose in poses])
        speed = float(np.max(np.linalg.norm(np.diff(positions, axis=0), axis=1))) / dt
        if speed <= cfg.max_speed * 1.001:
            break
        duration *= speed / cfg.max_speed * 1.01
    floor = min(positions[0, 2], positions[-1, 2]) - dip_m
    if np.any(positions[:, 2] < floor):
        raise PlanningError(f"the move above the target dips to z {positions[:, 2].min():.3f} "
                            f"m, below its ends")
    if np.any((positions < lower) | (positions > upper)):
        raise PlanningError("the move above the target leaves the workspace box")
    quats = Rotation.from_matrix(np.array([pose.rotation for pose in poses])).as_quat()
    quats[quats[:, 3] < 0] *= -1
    m = len(joints) - 1  # the last transit sample is the first of the rest
    return Plan(np.arange(m + len(rest)) * dt, np.vstack([positions[:m], plan.positions[k:]]),
                np.vstack([quats[:m], plan.quaternions[k:]]),
                np.concatenate([np.zeros(m), plan.forces_n[k:]]),
                ["approach"] * m + list(plan.phases[k:]),
                np.vstack([np.repeat(plan.normals[:1], m, axis=0), plan.normals[k:]]),
                np.vstack([joints[:m], rest]), transit=m)


# --- reach with the ball -------------------------------------------------------------------

@dataclass(frozen=True)
class ReachConfig:
    """How the planner searches the tool's orientation for a pose the arm reaches.

    The tool is a ball: it presses the same way from any direction within ``max_tilt_deg`` of
    the surface normal (beyond it the stalk and hand come close to the skin), and turning it
    about its own axis changes nothing at the contact.
    """

    max_tilt_deg: float = 30.0
    tilt_step_deg: float = 10.0
    azimuths: int = 8  # directions of the tilt around the normal
    yaw_step_deg: float = 45.0  # turns of the tool about the normal
    ball_radius_m: float = 0.02
    joint_margin_rad: float = 0.05  # a solution this close to a joint limit is refused
    min_manipulability: float = 0.01  # sqrt(det(J J^T)) of the position rows: singularity
    full_plans: int = 24  # at most this many candidates are solved along the whole plan
    plans_per_direction: int = 2  # of them, at most this many turns about the axis per tilt
    restarts: int = 4  # IK seeds spread over the joint ranges, besides the arm's own


def _axis_rotation(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    return Rotation.from_rotvec(np.radians(angle_deg) * axis / np.linalg.norm(axis)).as_matrix()


def tool_candidates(normal: np.ndarray, quaternion: np.ndarray,
                    cfg: ReachConfig) -> list[tuple[float, float, float, np.ndarray]]:
    """Tool orientations to try, straight along the normal first, then tilted further and
    further: (tilt, azimuth, yaw in deg, quaternion). ``quaternion`` is the straight
    (vertical tapping) orientation, tool z into the surface."""
    n = normal / np.linalg.norm(normal)
    R0 = Rotation.from_quat(quaternion).as_matrix()
    yaws = np.arange(0.0, 360.0, cfg.yaw_step_deg) if cfg.yaw_step_deg > 0 else np.zeros(1)
    yaws = sorted(yaws, key=lambda y: min(y, 360.0 - y))  # the least wrist turn first
    tilts = np.arange(0.0, cfg.max_tilt_deg + 1e-9, cfg.tilt_step_deg) \
        if cfg.tilt_step_deg > 0 else np.zeros(1)
    out = []
    for tilt in tilts:
        azimuths = [0.0] if tilt == 0 else np.arange(cfg.azimuths) * 360.0 / cfg.azimuths
        for azimuth in azimuths:
            axis = _axis_rotation(n, azimuth) @ R0[:, 0]  # a tangent direction
            for yaw in yaws:
                R = _axis_rotation(axis, tilt) @ _axis_rotation(n, yaw) @ R0
                out.append((float(tilt), float(azimuth), float(yaw),
                            Rotation.from_matrix(R).as_quat()))
    return out


def ball_offset(normal: np.ndarray, quaternion: np.ndarray, radius_m: float) -> np.ndarray:
    """Where the tool point (the ball's tip on its axis) lies from the contact point when the
    ball touches the surface there: r n + r a (a: the tool axis); zero when straight."""
    n = normal / np.linalg.norm(normal)
    return radius_m * (n + Rotation.from_quat(quaternion).as_matrix()[:, 2])


def pose_problem(arm: ArmKinematics, position: np.ndarray, quaternion: np.ndarray,
                 seeds: list[np.ndarray], cfg: ReachConfig) -> tuple[str, np.ndarray | None]:
    """("", joints) when the arm reaches the tool pose well inside its limits and away from
    singularities, else (the constraint that blocks it: reach | joint limit | singularity,
    None)."""
    target = pin.SE3(Rotation.from_quat(quaternion).as_matrix(), np.asarray(position, float))
    problem = "reach"
    for seed in seeds:
        try:
            q = arm.solve(target, seed)
        except PlanningError:
            continue
        if np.any(q < arm.lower + cfg.joint_margin_rad) or \
                np.any(q > arm.upper - cfg.joint_margin_rad):
            problem = "joint limit"
            continue
        J = arm.jacobian(q)[:3]
        if np.sqrt(max(np.linalg.det(J @ J.T), 0.0)) < cfg.min_manipulability:
            problem = "singularity"
            continue
        return "", q
    return problem, None


@dataclass(frozen=True)
class ClearanceConfig:
    """How near the arm may come, along a plan, to what the camera sees (body and table)."""

    link_radius_m: float = 0.07  # the links: capsules about the joint origins' polyline
    hand_radius_m: float = 0.045  # the hand, across the fingers
    tool_radius_m: float = 0.025  # the tool, from the flange to the ball
    contact_zone_m: float = 0.05  # seen points this near the target are the contact itself
    every: int = 10  # plan samples between two checks


ArmParts = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def seen_points(depth: np.ndarray, K: np.ndarray, base_T_camera: np.ndarray, stride: int,
                lower: np.ndarray, upper: np.ndarray,
                arm: tuple[np.ndarray, np.ndarray, np.ndarray],
                radii_m: tuple[float, float, float]) -> np.ndarray:
    """What the camera sees (base frame) inside the box ``lower``..``upper``, the arm itself
    left out (its links, hand and tool polylines, each grown by its radius in ``radii_m``):
    the body and the table the arm must keep clear of. ``depth`` holds every ``stride``-th
    pixel only."""
    pts = transform_points(base_T_camera, depth_to_points(K, depth, stride, sampled=True))
    pts = pts[np.all((pts >= lower) & (pts <= upper), axis=1)]
    for polyline, radius in zip(arm, radii_m, strict=True):
        pts = pts[outside_capsules(pts, polyline, radius)]
    return pts


def collision_problem(parts_of: ArmParts, joints: np.ndarray, phases: list[str],
                      seen: np.ndarray, contact: np.ndarray, cfg: ClearanceConfig) -> str:
    """Where the arm, at these joint positions (a plan's, with their phases), comes within
    its radii of a seen point (base frame: the body, the table) outside the contact zone
    about ``contact`` (the target, or the target and the stroke's path after it: a
    polyline); "" when it stays clear. ``parts_of(q)``: the links', hand's and tool's
    polylines, as ``ArmModel.parts``."""
    seen = np.asarray(seen, float).reshape(-1, 3)
    contact = np.asarray(contact, float).reshape(-1, 3)
    seen = seen[polyline_distances(seen, contact) > cfg.contact_zone_m]
    if not len(seen) or not len(joints):
        return ""
    radii = {"arm": cfg.link_radius_m, "hand": cfg.hand_radius_m, "tool": cfg.tool_radius_m}
    for i in [*range(0, len(joints), cfg.every), len(joints) - 1]:
        for (part, radius), polyline in zip(radii.items(), parts_of(joints[i]), strict=True):
            inside = ~outside_capsules(seen, polyline, radius)
            if inside.any():
                hit = seen[inside]
                nearest = hit[np.argmin(polyline_distances(hit, polyline))]
                return (f"the {part} would come within {radius * 1000:.0f} mm of the body or "
                        f"the table (a seen point at {np.round(nearest, 3).tolist()} m) during "
                        f"the {phases[i]}")
    return ""


@dataclass
class ReachedPlan:
    """A plan the arm can run, and the tool orientation found for it."""

    plan: Plan
    tilt_deg: float
    yaw_deg: float


def plan_reachable(arm: ArmKinematics, q0: np.ndarray, start_position: np.ndarray,
                   start_quaternion: np.ndarray, target: np.ndarray, normal: np.ndarray,
                   quaternion: np.ndarray, path: np.ndarray, force_n: float, technique: str,
                   cfg: PlannerConfig, reach: ReachConfig, lower: np.ndarray,
                   upper: np.ndarray,
                   collision: Callable[[np.ndarray, list[str]], str] | None = None
                   ) -> ReachedPlan:
    """The first tool orientation (straightest first) whose whole plan the arm reaches
    inside the workspace box, clear of what ``collision`` (joints, phases -> why the arm
    there collides, or "") finds; the force stays along the surface normal whatever the
    tilt. PlanningError naming the constraints that block every orientation."""
    blocked: dict[str, int] = {}
    detail: dict[str, str] = {}
    tries = 0
    seeds = [np.asarray(q0, float), np.asarray(arm.posture, float)]
    for seed in list(seeds):  # the first joint turned toward the target (a far azimuth)
        turned = seed.copy()
        turned[0] = np.clip(np.arctan2(target[1], target[0]), arm.lower[0], arm.upper[0])
        seeds.append(turned)
    # and a few fixed spreads over the middle of the joint ranges (the same every run)
    middle, half = (arm.lower + arm.upper) / 2, (arm.upper - arm.lower) / 2
    spread = np.random.default_rng(0).uniform(-0.6, 0.6, (reach.restarts, arm.nq))
    seeds += [middle + half * row for row in spread]
    per_direction: dict[tuple[float, float], int] = {}
    for tilt, azimuth, yaw, quat in tool_candidates(normal, quaternion, reach):
        if per_direction.get((tilt, azimuth), 0) >= reach.plans_per_direction:
            continue  # turning the ball about its axis moves the arm, not the path
        offset = ball_offset(normal, quat, reach.ball_radius_m)
        problem, q_target = pose_problem(arm, target + offset, quat, seeds, reach)
        way = -Rotation.from_quat(quat).as_matrix()[:, 2]
        if not problem:  # the way in and out starts above the target, along the tool axis
            problem, _ = pose_problem(arm, target + offset + way * (cfg.standoff_m +
                                      cfg.clearance_m), quat, [q_target], reach)
            problem = problem and f"{problem} above the target"
        if not problem and collision is not None:  # the pose itself, before the whole path
            why = collision(q_target[None], ["press"])
            if why:
                problem = "collision"
                detail.setdefault("collision", why)
        if problem:
            blocked[problem] = blocked.get(problem, 0) + 1
            continue
        plan = plan_massage(start_position, start_quaternion, target + offset, normal, quat,
                            np.asarray(path).reshape(-1, 3) + offset, force_n, technique, cfg,
                            approach=way)
        try:
            check_workspace(plan, lower, upper)
        except PlanningError as err:
            blocked["workspace"] = blocked.get("workspace", 0) + 1
            detail.setdefault("workspace", str(err))
            continue
        if tries >= reach.full_plans:
            break
        tries += 1
        per_direction[(tilt, azimuth)] = per_direction.get((tilt, azimuth), 0) + 1
        try:
            reached = ReachedPlan(solve_plan(arm, plan, q0), tilt, yaw)
        except PlanningError as err:
            try:  # the straight way there walks the joints into a limit: go in joint space
                reached = ReachedPlan(solve_with_transit(arm, plan, q0, q_target, cfg, lower,
                                                         upper), tilt, yaw)
            except PlanningError as transit_err:
                blocked["reach along the path"] = blocked.get("reach along the path", 0) + 1
                detail.setdefault("reach along the path",
                                  f"{err}; in joint space: {transit_err}")
                continue
        problem = "" if collision is None else collision(reached.plan.joints,
                                                         reached.plan.phases)
        if not problem:
            return reached
        blocked["collision"] = blocked.get("collision", 0) + 1
        detail.setdefault("collision", problem)
    if not blocked:
        raise PlanningError("no tool orientation to try; check MAX_TILT_DEG")
    # a pose the arm reaches but that strikes the body says more than the many it cannot
    worst = "collision" if "collision" in blocked else max(blocked, key=blocked.get)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(blocked.items(), key=lambda kv: -kv[1]))
    hint = detail.get(worst) or {
        "reach": "the target is out of the arm's reach: move the body closer to the arm",
        "joint limit": "every pose needs a joint at its limit: move the body or the arm",
        "singularity": "every pose is near a singularity: move the body or the arm",
    }.get(worst.removesuffix(" above the target"), "move the body or the arm")
    raise PlanningError(f"no tool pose within {reach.max_tilt_deg:.0f} deg of the normal "
                        f"works ({counts}): {hint}")
