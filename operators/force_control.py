"""Hybrid motion/force control (VBRM): position along the surface, PID force along the normal.

The selection is S = I - n n^T: tangential directions follow the trajectory, the normal
direction is owned by the force loop. The force loop moves the reference along -n at a
rate given by a PID on the normal force error (an admittance on top of franky's Cartesian
impedance), with anti-windup and a low-pass filtered derivative.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation
from tuina.operators.planner import Plan, min_jerk, sample
from tuina.operators.safety import trajectory_problem
from tuina.operators.tracking import TrackerWatch, predict


@dataclass(frozen=True)
class ForceConfig:
    """Gains and limits (SI units: N, m, s)."""

    kp: float = 0.01  # (m/s) per N
    ki: float = 0.0  # (m/s) per N s: the admittance already integrates the force error
    kd: float = 0.0002  # (m/s) per N/s
    derivative_tau_s: float = 0.05
    integral_limit: float = 5.0  # N s
    max_normal_speed: float = 0.02  # m/s
    search_speed: float = 0.01  # m/s, moving towards the surface before contact
    contact_threshold_n: float = 1.0
    max_depth_m: float = 0.03  # furthest the reference may go past the planned surface
    force_cap_n: float = 15.0
    release_speed: float = 0.02  # m/s, reference back to the plan after contact ends
    # m/s, body-motion correction rate limit. The tracker's motion moves in steps of its
    # motion criterion; ramped at 60 mm/s they dragged the ball over the skin in bursts
    # (moving-body force RMS 0.40-0.74 N over 6 runs), at 25 mm/s 0.30-0.33 N over 3; the
    # tracker calls a body faster than 80 mm/s lost, a shift of 20 mm in 2 s peaks at 19 mm/s
    max_follow_speed: float = 0.025
    max_follow_rate_deg: float = 15.0
    compensation_gain: float = 2.0  # 1/s, PBVS compensation of the position tracking error
    max_compensation_m: float = 0.005
    moving_speed: float = 0.002  # m/s: a slower reference counts as still
    retreat_m: float = 0.06  # how far an aborted massage backs off along the normal
    retreat_speed: float = 0.05  # m/s, mean speed of that retreat
    max_force_jump_n: float = 3.0  # a larger change between two readings in contact: a
    # fault; a larger fall out of contact: contact lost (a rise from no contact is contact)
    body_push_m: float = 0.0003  # with the tool thrown out along the normal this far in one
    # period (more than the force loop moves it, 0.2 mm), a jump is the body pushing
    # the reading's zero, taken again in free space before each contact (the bias drifts
    # since the robot node's start tare): a running mean over this long, of readings within
    # tare_band_n of zero (a larger one is no bias: a collision on the way)
    tare_tau_s: float = 0.2
    tare_band_n: float = 2.0


@dataclass
class PID:
    """PID with anti-windup (clamped integral) and a first-order filtered derivative."""

    kp: float
    ki: float
    kd: float
    tau: float
    i_limit: float
    integral: float = 0.0
    d_filtered: float = 0.0
    last_error: float | None = None

    def step(self, error: float, dt: float) -> float:
        if dt <= 0:
            return self.kp * error + self.ki * self.integral
        self.integral = float(np.clip(self.integral + error * dt, -self.i_limit, self.i_limit))
        if self.last_error is not None:
            raw = (error - self.last_error) / dt
            alpha = dt / (self.tau + dt)
            self.d_filtered += alpha * (raw - self.d_filtered)
        self.last_error = error
        return self.kp * error + self.ki * self.integral + self.kd * self.d_filtered

    def reset(self) -> None:
        self.integral, self.d_filtered, self.last_error = 0.0, 0.0, None


@dataclass
class ControlOutput:
    """One control step's reference."""

    position: np.ndarray
    quaternion: np.ndarray
    mode: str  # track | hold | stop
    phase: str  # the trajectory's phase, "done", or "abort" while backing off
    force_target_n: float
    force_measured_n: float
    twist: np.ndarray = field(default_factory=lambda: np.zeros(6))  # feed-forward v, w
    normal: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    force_controlled: bool = False  # the normal direction belongs to the force loop
    normal_speed: float = 0.0  # m/s into the body, the force loop's output (Eq. 16)


def phase_window(plan_t: np.ndarray, phases: list[str], i: int, lo: float,
                 hi: float) -> tuple[float, float]:
    """[lo, hi] cut to the span of the phase of sample ``i``: the plan may jump where its
    phase changes (approach ends at the standoff, contact starts on the surface), so
    positions are neither interpolated nor differenced across a change."""
    k = i
    while k + 1 < len(plan_t) and plan_t[k] < hi:
        if phases[k + 1] != phases[i]:
            hi = float(plan_t[k])
            break
        k += 1
    k = i
    while k > 0 and plan_t[k] > lo:
        if phases[k - 1] != phases[i]:
            lo = float(plan_t[k])
            break
        k -= 1
    return min(lo, hi), hi


@dataclass
class HybridForceController:
    """State of the hybrid controller across control periods."""

    config: ForceConfig
    pid: PID = field(init=False)
    depth: float = 0.0  # reference offset along -n from the planned point, m
    in_contact: bool = False
    force_phase: bool = False
    last_t: float | None = None
    applied_motion: np.ndarray = field(default_factory=lambda: np.eye(4))
    compensation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    abort_reason: str = ""
    fault: str = ""  # the abort is a fault (an error, not a re-plan): force_jump | body_push
    stopped: bool = False  # the force passed the cap: latched until a new trajectory
    paused_s: float = 0.0  # plan time held back while searching for contact
    _abort: tuple[float, np.ndarray, np.ndarray, np.ndarray] | None = None  # t, from, to, q
    _last: ControlOutput | None = None
    _last_force: float | None = None
    _last_tool: np.ndarray | None = None
    _normal: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    zero: np.ndarray | None = None  # the reading's zero (None: no free-space reading yet)

    def __post_init__(self) -> None:
        c = self.config
        self.pid = PID(c.kp, c.ki, c.kd, c.derivative_tau_s, c.integral_limit)

    def _follow(self, target_motion: np.ndarray, dt: float, anchor: np.ndarray) -> np.ndarray:
        """Move the applied body motion towards the estimate at bounded rates (no jumps), as
        seen at ``anchor`` (the plan's point now, in the frame it was planned on): that point
        moves along a straight line no faster than max_follow_speed while the motion turns no
        faster than max_follow_rate_deg, so the translation that comes with a rotation about
        a far origin (the body's, the base's) is never torn from it."""
        c = self.config
        A = self.applied_motion
        here = A[:3, :3] @ anchor + A[:3, 3]
        there = target_motion[:3, :3] @ anchor + target_motion[:3, 3]
        shift = there - here
        turn = Rotation.from_matrix(target_motion[:3, :3] @ A[:3, :3].T).as_rotvec()
        fraction = 1.0
        if np.linalg.norm(shift) > 0:
            fraction = min(fraction, c.max_follow_speed * dt / np.linalg.norm(shift))
        if np.linalg.norm(turn) > 0:
            fraction = min(fraction, np.radians(c.max_follow_rate_deg) * dt
                           / np.linalg.norm(turn))
        out = np.eye(4)
        out[:3, :3] = Rotation.from_rotvec(fraction * turn).as_matrix() @ A[:3, :3]
        out[:3, 3] = here + fraction * shift - out[:3, :3] @ anchor
        self.applied_motion = out
        return out

    def tared(self, wrench: np.ndarray, dt: float) -> np.ndarray:
        """The reading less its zero; before the force loop takes over, a free-space reading
        first moves the zero towards it."""
        w = np.asarray(wrench, float)
        if w.shape != (6,) or not np.all(np.isfinite(w)) or np.all(w == 0.0):
            return w  # a fault the checks below (and the robot node) must see as it is
        if not self.force_phase and self._abort is None and \
                np.linalg.norm(w[:3]) < self.config.tare_band_n:
            if self.zero is None:
                self.zero = w.copy()
            else:
                self.zero = self.zero + (w - self.zero) * dt / (self.config.tare_tau_s + dt)
        return w if self.zero is None else w - self.zero

    def abort(self, t: float, tool_position: np.ndarray, reason: str) -> None:
        """Stop the massage: back off along the surface normal from where the tool is, then
        hold there (until a new trajectory replaces this controller)."""
        if self._abort is not None:
            return
        last = self._last
        n = np.array([0.0, 0.0, 1.0]) if last is None else self._normal
        q = np.array([0.0, 0.0, 0.0, 1.0]) if last is None else last.quaternion
        start = np.asarray(tool_position, float)
        self._abort = (t, start, start + n * self.config.retreat_m, q)
        self.abort_reason = reason

    @property
    def aborted(self) -> bool:
        """The massage was stopped (backing off or holding off the body)."""
        return self._abort is not None

    def _retreat(self, t: float, f_meas: float) -> ControlOutput:
        t0, start, goal, q = self._abort
        duration = 1.875 * self.config.retreat_m / self.config.retreat_speed
        s = min_jerk(np.array([(t - t0) / duration]))[0]
        moving = t - t0 < duration
        n = self._normal
        return ControlOutput(start + s * (goal - start), q, "track" if moving else "hold",
                             "abort", 0.0, f_meas, normal=n)

    def step(self, t: float, plan: Plan, tool_position: np.ndarray, wrench: np.ndarray,
             body_motion: np.ndarray, body_twist: np.ndarray | None = None) -> ControlOutput:
        """Reference at event time t (s since the trajectory start).

        ``body_twist`` (v, w: p' = w x p + v) is the body's velocity: with the plan's own
        velocity it becomes the reference's feed-forward twist, so the arm's impedance does
        not lag a moving body.
        """
        plan_t, positions, quats = plan.t_s, plan.positions, plan.quaternions
        forces, normals, phases = plan.forces_n, plan.normals, plan.phases
        body_twist = np.zeros(6) if body_twist is None else np.asarray(body_twist, float)
        c = self.config
        dt = 0.0 if self.last_t is None else max(t - self.last_t, 0.0)
        self.last_t = t
        wrench = self.tared(wrench, dt)
        if self._abort is None:
            f_check = float(-np.asarray(wrench[:3]) @ self._normal)
            last_force, self._last_force = self._last_force, f_check
            last_tool, self._last_tool = self._last_tool, np.asarray(tool_position, float)
            touching = last_force is not None and last_force >= c.contact_threshold_n
            if (touching and np.isfinite(f_check)
                    and abs(f_check - last_force) > c.max_force_jump_n):
                pushed = 0.0 if last_tool is None else \
                    float((self._last_tool - last_tool) @ self._normal)
                if f_check >= c.contact_threshold_n and pushed > c.body_push_m:
                    self.fault = "body_push"
                    self.abort(t, tool_position, f"the body pushed into the tool: the force "
                               f"rose {last_force:.1f} -> {f_check:.1f} N and the tool was "
                               f"thrown {pushed * 1000:.1f} mm back in one period")
                elif f_check >= c.contact_threshold_n:
                    # the tool did not move (yet: a flinch is faster than the arm's
                    # impedance gives way), so the cause cannot be told apart
                    self.fault = "force_jump"
                    self.abort(t, tool_position, f"the force reading jumped {last_force:.1f} "
                               f"-> {f_check:.1f} N in one period while in contact, the tool "
                               "still: the force sensor, or the body moving into the tool")
                else:
                    self.abort(t, tool_position, f"contact lost: the force fell "
                               f"{last_force:.1f} -> {f_check:.1f} N in one period")
        if self.stopped:
            n = self._normal
            f_meas = float(-np.asarray(wrench[:3]) @ n)
            q = self._last.quaternion if self._last is not None else np.array([0, 0, 0, 1.0])
            return ControlOutput(np.asarray(tool_position, float) + n * 0.02, q, "stop",
                                 "abort", 0.0, f_meas, normal=n)
        if self._abort is not None:
            n = self._normal
            f_meas = float(-np.asarray(wrench[:3]) @ n)
            if f_meas > c.force_cap_n or not np.isfinite(f_meas):
                self.stopped = True
                return ControlOutput(tool_position + n * 0.02, self._abort[3], "stop", "abort",
                                     0.0, f_meas, normal=n)
            return self._retreat(t, f_meas)
        def index(tp: float) -> int:
            return int(np.clip(np.searchsorted(plan_t, tp, side="right") - 1, 0,
                               len(plan_t) - 1))

        t = t - self.paused_s  # plan time
        i = index(t)
        if (self.force_phase and not self.in_contact and phases[i] != "contact"
                and forces[i] > 0):
            # the plan waits at the end of the contact phase until the tool touches
            first = i
            while first > 0 and phases[first - 1] != "contact":
                first -= 1
            held = float(plan_t[first]) - 1e-6
            self.paused_s += t - held
            t = held
            i = index(t)
        phase = phases[i] if t <= plan_t[-1] else "done"
        h = 0.01
        lo, hi = phase_window(plan_t, phases, i, t - h, t + h)
        planned = sample(plan_t, positions, min(t, hi))
        M = self._follow(body_motion, dt, planned)
        p_plan = M[:3, :3] @ planned + M[:3, 3]
        n = M[:3, :3] @ normals[i]
        n /= np.linalg.norm(n)
        self._normal = n
        q = (Rotation.from_matrix(M[:3, :3]) * Rotation.from_quat(quats[i])).as_quat()
        f_target = float(forces[i]) if phase != "done" else 0.0
        f_meas = float(-np.asarray(wrench[:3]) @ n)  # pushing into the body is positive
        if f_meas > c.force_cap_n or not np.isfinite(f_meas):
            self.stopped = True
            return ControlOutput(tool_position + n * 0.02, q, "stop", phase, f_target, f_meas,
                                 normal=n)
        rate = 0.0
        if f_target > 0:
            if not self.force_phase:
                # the force loop takes over where the tool is, so the reference is continuous
                self.force_phase = True
                self.depth = float((p_plan + self.compensation - tool_position) @ n)
                self.pid.reset()
            if not self.in_contact and f_meas > c.contact_threshold_n:
                self.in_contact = True
            if self.in_contact:
                rate = self.pid.step(f_target - f_meas, dt)
            else:
                rate = c.search_speed
            rate = float(np.clip(rate, -c.max_normal_speed, c.max_normal_speed))
            self.depth = float(min(self.depth + rate * dt, c.max_depth_m))
            if not self.in_contact and self.depth >= c.max_depth_m:
                self.abort(t + self.paused_s, tool_position, f"no contact within "
                           f"{c.max_depth_m * 1000:.0f} mm past the planned surface")
                return self._retreat(t + self.paused_s, f_meas)
        else:
            self.force_phase = False
            self.in_contact = False
            step = c.release_speed * dt
            self.depth = float(np.clip(0.0, self.depth - step, self.depth + step))
        plan_velocity = np.zeros(3)
        if hi > lo:
            plan_velocity = M[:3, :3] @ (sample(plan_t, positions, hi)
                                         - sample(plan_t, positions, lo)) / (hi - lo)
        # PBVS compensation velocity: the tracking error drives an offset of the reference
        # (tangential only while the force loop owns the normal: S = I - n n^T). It acts
        # while the reference moves (approach, stroke, a moving body); on a still target
        # skin friction holds the ball and the integral would only load and slip it.
        surface_speed = np.linalg.norm(body_twist[:3] + np.cross(body_twist[3:], p_plan))
        moving = max(float(np.linalg.norm(plan_velocity)), surface_speed) > c.moving_speed
        error = p_plan - np.asarray(tool_position, float)
        if self.force_phase:
            error = error - (error @ n) * n
        if moving or not self.force_phase:
            self.compensation = self.compensation + c.compensation_gain * error * dt
        norm = np.linalg.norm(self.compensation)
        if norm > c.max_compensation_m:
            self.compensation *= c.max_compensation_m / norm
        position = p_plan + self.compensation - n * self.depth
        if self.force_phase:  # the plan's normal motion belongs to the force loop (S = I - nn^T)
            plan_velocity = plan_velocity - (plan_velocity @ n) * n
        # the surface's own motion is fed forward in full: the force loop works relative to it
        velocity = plan_velocity + body_twist[:3] + np.cross(body_twist[3:], position)
        twist = np.zeros(6) if phase == "done" else np.concatenate([velocity, body_twist[3:]])
        self._last = ControlOutput(position, q, "hold" if phase == "done" else "track", phase,
                                   f_target, f_meas, twist, n, self.force_phase, rate)
        return self._last


@dataclass(frozen=True)
class Notice:
    """What the controller tells the session (an event) and, when ``say`` is set, the
    terminal."""

    kind: str  # abort | paused | error | phase | done
    detail: str
    say: str = ""


LOST_STATUSES = ("large_motion", "lost")


class PlanFollower:
    """The force controller over the life of its trajectories: the current plan, the body
    motion that carries it (relative to the frame it was planned on), the tracker's silence,
    and what to tell the session. One ``step`` per robot state."""

    def __init__(self, config: ForceConfig, tracker_timeout_s: float, follow_lead_s: float,
                 max_lead_s: float) -> None:
        self.config = config
        self.tracker_timeout_s = tracker_timeout_s
        self.follow_lead_s, self.max_lead_s = follow_lead_s, max_lead_s
        self.plan: Plan | None = None
        self.plan_start_ns = 0
        self.reference_stamp_ns = 0
        self.start_ns: int | None = None  # robot time of the plan's first state
        self.controller = HybridForceController(config)
        self.motion, self.twist = np.eye(4), np.zeros(6)
        self.track_lost = ""  # why the tracker gave up on the current plan's reference
        self.watch = TrackerWatch(tracker_timeout_s)
        self.announced = False  # the current controller's abort was told
        self.stop_told = False  # the cap's error went out for this plan
        self.phase = ""
        self.latest_motion: Any = None  # the tracker's latest BodyMotion
        self.paused = ""  # why the person paused: the massage backs off, no plan is followed
        self.pause_told = False  # the current pause's back-off was told

    def new_plan(self, plan: Plan, start_stamp_ns: int, reference_stamp_ns: int) -> str | None:
        """A trajectory; the problem with it when it must not be followed (a massage in
        progress then stops and backs off)."""
        problem = trajectory_problem(plan.t_s, plan.positions, plan.quaternions, plan.forces_n,
                                     plan.normals, plan.phases, self.config.force_cap_n)
        if problem is not None:
            self.track_lost = self.track_lost or "a malformed trajectory arrived"
            return problem
        self.plan, self.plan_start_ns = plan, start_stamp_ns
        self.reference_stamp_ns, self.start_ns, self.stop_told = reference_stamp_ns, None, False
        self.controller = HybridForceController(self.config)
        self.motion, self.twist, self.track_lost, self.announced = np.eye(4), np.zeros(6), "", \
            False
        self.watch.new_plan()
        if self.latest_motion is not None:  # heard just before the plan: as if just after it
            self._apply(self.latest_motion)
        return None

    def pause(self, reason: str) -> None:
        """The person paused the step: a massage in progress backs off along the normal and
        holds; no trajectory is taken until ``resume``."""
        if not self.paused:
            self.paused, self.pause_told = reason or "the person paused", False

    def resume(self) -> None:
        """The pause is over: the next trajectory (the step planned again) is followed."""
        self.paused = ""

    def on_console(self, event: Any) -> None:
        """A console event (duck-typed SessionEvent): its ``pause`` and ``resume``."""
        if event.kind == "pause":
            self.pause(event.detail)
        elif event.kind == "resume":
            self.resume()

    def set_force_target(self, force_n: float) -> float:
        """The person's force target for the rest of the current plan: its force profile
        scaled so that its largest value is ``force_n`` (kept under the cap); the target
        now in force (0 without a plan to scale)."""
        plan = self.plan
        if plan is None or not np.any(plan.forces_n > 0):
            return 0.0
        force_n = min(max(float(force_n), 0.0), self.config.force_cap_n * 0.9)
        plan.forces_n = plan.forces_n * (force_n / float(np.max(plan.forces_n)))
        return force_n

    def on_motion(self, motion: Any, stamp: int) -> None:
        """A BodyMotion (duck-typed); motions relative to an older reference belong to an
        older plan. The latest is kept: a plan that comes after it, between the same two
        robot states, starts from it (the order of two inputs that arrive together must not
        change the command: a replay cannot tell it)."""
        self.watch.motion(stamp)
        self.latest_motion = motion
        if self.plan is not None:
            self._apply(motion)

    def _apply(self, motion: Any) -> None:
        if motion.reference_stamp_ns < self.reference_stamp_ns:
            return
        if motion.status == "ok":
            self.motion = np.eye(4)
            self.motion[:3, :3] = np.asarray(motion.rotation).reshape(3, 3)
            self.motion[:3, 3] = motion.translation
            self.twist = np.asarray(motion.twist)
        else:
            self.twist = np.zeros(6)  # hold the last good motion, never extrapolate it
        if motion.status in LOST_STATUSES:
            self.track_lost = self.track_lost or f"body tracking {motion.status.replace('_', ' ')}"

    def step(self, stamp: int, tool_position: np.ndarray, wrench: np.ndarray
             ) -> tuple[ControlOutput | None, list[Notice]]:
        """The reference for this robot state (None before the plan starts) and what to
        tell."""
        if self.plan is None:
            return None, []
        if self.start_ns is None:
            # the trajectory starts at the first state the controller sees for it
            self.start_ns = max(stamp, self.plan_start_ns)
        t = (stamp - self.start_ns) * 1e-9
        if t < 0:
            return None, []
        controller = self.controller
        silent, feeding, age_s = self.watch.state(stamp, self.start_ns)
        if silent and not self.track_lost:
            self.track_lost = f"no body motion for {self.tracker_timeout_s} s"
        if self.paused and not controller.aborted and self.phase != "done":
            controller.abort(t, tool_position, f"paused ({self.paused})")
        elif self.track_lost and not controller.aborted and self.phase != "done":
            controller.abort(t, tool_position, self.track_lost)
        feed = self.twist if feeding else np.zeros(6)
        lead = min(self.follow_lead_s + age_s, self.max_lead_s)
        ref = controller.step(t, self.plan, tool_position, wrench,
                              predict(self.motion, feed, lead), feed)
        notices = []
        if self.paused and controller.aborted and not self.pause_told:
            self.announced = self.pause_told = True
            said = f"force-controller: paused ({self.paused})"
            notices.append(Notice("paused", f"{said}; backing off, holding until resumed",
                                  f"{said}: backing off, holding until resumed"))
        elif controller.aborted and not self.announced:
            self.announced = True
            reason = controller.abort_reason
            notices.append(Notice("abort", f"force-controller: {reason}; backing off",
                                  f"force-controller: {reason}: backing off"))
            if controller.fault:
                notices.append(Notice("error", f"force-controller: {reason}"))
        if ref.phase != self.phase:
            self.phase = ref.phase
            notices.append(Notice("done" if ref.phase == "done" else "phase", ref.phase,
                                  f"force-controller: phase {ref.phase} at {t:.2f} s"))
        if ref.mode == "stop" and not self.stop_told:
            self.stop_told = True
            notices.append(Notice("error", f"force-controller: force {ref.force_measured_n:.1f}"
                                  f" N over the cap {self.config.force_cap_n} N; retreating"))
        return ref, notices
