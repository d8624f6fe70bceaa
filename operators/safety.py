"""Robot-side safety: every command is checked before it can move the arm."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SafetyConfig:
    """Limits the robot node enforces whatever the upstream nodes send (m, N, s)."""

    workspace_min: tuple[float, float, float] = (0.15, -0.75, 0.0)
    workspace_max: tuple[float, float, float] = (0.85, 0.75, 0.80)
    force_cap_n: float = 15.0
    max_speed: float = 0.15  # m/s of the reference
    max_reference_gap_m: float = 0.05  # reference further than this from the tool: reject
    watchdog_s: float = 0.1


def outside_workspace(position: np.ndarray, cfg: SafetyConfig) -> str | None:
    """'<position> is outside the workspace box <min>..<max>', or None inside it."""
    p = np.asarray(position, float)
    if np.any(p < cfg.workspace_min) or np.any(p > cfg.workspace_max):
        return (f"{np.round(p, 3).tolist()} is outside the workspace box "
                f"{list(cfg.workspace_min)}..{list(cfg.workspace_max)}")
    return None


def command_problem(position: np.ndarray, quaternion: np.ndarray, tool_position: np.ndarray,
                    cfg: SafetyConfig) -> str | None:
    """Why this command must not be executed, or None when it is safe."""
    p, q = np.asarray(position, float), np.asarray(quaternion, float)
    if p.shape != (3,) or q.shape != (4,):
        return f"malformed command: position {p.shape}, quaternion {q.shape}"
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
        return "command contains NaN or infinity"
    if abs(np.linalg.norm(q) - 1.0) > 1e-3:
        return f"command quaternion is not unit (|q| = {np.linalg.norm(q):.4f})"
    if outside := outside_workspace(p, cfg):
        return f"command position {outside}"
    gap = float(np.linalg.norm(p - tool_position))
    if gap > cfg.max_reference_gap_m:
        limit_mm = cfg.max_reference_gap_m * 1000
        return f"command is {gap * 1000:.0f} mm from the tool (max {limit_mm:.0f} mm)"
    return None


def rate_limit(previous: np.ndarray, target: np.ndarray, max_speed: float,
               dt: float) -> np.ndarray:
    """Move the reference towards target by at most max_speed * dt."""
    delta = np.asarray(target, float) - previous
    step = max_speed * max(dt, 0.0)
    dist = float(np.linalg.norm(delta))
    return target if dist <= step else previous + delta * (step / dist)


def feed_forward(twist: np.ndarray, config: SafetyConfig,
                 max_rate_rad_s: float = 0.5) -> np.ndarray | None:
    """A command's feed-forward twist within the speed limits; None when it is not finite."""
    twist = np.asarray(twist, float)
    if twist.shape != (6,) or not np.all(np.isfinite(twist)):
        return None
    v, w = twist[:3].copy(), twist[3:].copy()
    speed, rate = float(np.linalg.norm(v)), float(np.linalg.norm(w))
    if speed > config.max_speed:
        v *= config.max_speed / speed
    if rate > max_rate_rad_s:
        w *= max_rate_rad_s / rate
    return np.concatenate([v, w])


def retreat_point(tool_position: np.ndarray, wrench: np.ndarray, distance: float) -> np.ndarray:
    """A point away from the contact: against the applied force, or straight up."""
    f = np.asarray(wrench, float)[:3]
    if np.linalg.norm(f) < 1e-6:
        return tool_position + np.array([0.0, 0.0, distance])
    return tool_position - distance * f / np.linalg.norm(f)


def trajectory_problem(t_s: np.ndarray, positions: np.ndarray, quaternions: np.ndarray,
                       forces_n: np.ndarray, normals: np.ndarray, phases: list[str],
                       force_cap_n: float) -> str | None:
    """Why a trajectory must not be followed, or None when it is well formed."""
    n = len(t_s)
    if n < 2:
        return f"trajectory has {n} samples (needs at least 2)"
    shapes = {"positions": (positions, 3), "quaternions": (quaternions, 4),
              "normals": (normals, 3)}
    for name, (values, width) in shapes.items():
        if values.shape != (n, width):
            return f"trajectory {name} have shape {values.shape}, expected ({n}, {width})"
    if forces_n.shape != (n,) or len(phases) != n:
        return f"trajectory has {n} times but {forces_n.size} forces and {len(phases)} phases"
    for name, values in (("times", t_s), ("positions", positions),
                         ("quaternions", quaternions), ("forces", forces_n),
                         ("normals", normals)):
        if not np.all(np.isfinite(values)):
            return f"trajectory {name} contain NaN or infinity"
    if np.any(np.diff(t_s) <= 0):
        return "trajectory times do not increase"
    if np.any(np.abs(np.linalg.norm(quaternions, axis=1) - 1.0) > 1e-3):
        return "trajectory quaternions are not unit"
    if np.any(forces_n < 0) or np.any(forces_n > force_cap_n):
        return (f"trajectory forces span {forces_n.min():.1f}..{forces_n.max():.1f} N, "
                f"outside 0..{force_cap_n} N")
    return None
