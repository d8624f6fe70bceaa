"""The robot's last line of defence: one safety state machine for every robot node.

Driven by the robot's state and commands with the robot's own time passed in (no clock
inside). It decides the reference the arm is sent: the controller's command while all is
well; on any fault it latches and, in contact (or when the force cannot tell), *releases
contact* (moves the tool away from the body, against the measured contact force, else along
the last surface normal, else straight up, at a bounded speed for ``release_m``); out of
contact it stops the arm where it stands. Then it holds and keeps watching the force: a
body that comes back into the tool is released from again.

Modes: ``waiting`` (no command yet: hold where the arm is), ``follow``, ``release``,
``settle`` (the release's reference has stopped; the tool catches up), ``hold`` (released,
latched until the graph restarts), ``finished`` (the session ended out
of contact).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from tuina.operators.safety import (
    SafetyConfig,
    command_problem,
    feed_forward,
    outside_workspace,
    rate_limit,
    retreat_point,
)
from tuina.operators.sensor import StartTare

# the fault vocabulary of the message contract: RobotState.status is ``faulted:<name>`` and
# each latch goes out as one ``error`` event naming it
FAULTS: dict[str, str] = {
    "error_event": "a node reported an error",
    "done_in_contact": "the session ended with the tool in contact",
    "command_closed": "the command stream closed (its node is gone)",
    "node_gone": "another node's input closed mid-session (the node is gone)",
    "watchdog": "no command for WATCHDOG_S",
    "stale_command": "only commands older than MAX_COMMAND_AGE_S (robot time) for WATCHDOG_S",
    "wrench_invalid": "the force reading is not finite, or exactly zero in contact",
    "force_cap": "the contact force passed FORCE_CAP_N",
    "bad_command": "a malformed, non-finite, out-of-workspace or out-of-reach command",
    "controller_stop": "the force controller asked for a stop",
    "workspace": "the tool left the workspace box",
    "estop": "the operator's e-stop",
    "link_lost": "the link to the arm was lost",
    "robot_error": "the arm reports an error",
    "wrench_tare": "the force read at start is too large for a bias: something touches the arm",
    "pose_error": "the tool stays turned off its commanded orientation (in contact, or the "
                  "reference still): the arm does not reach the pose, the press would not be "
                  "where it was planned",
}


@dataclass(frozen=True)
class SupervisorConfig:
    """The supervisor's limits (m, N, s)."""

    safety: SafetyConfig = field(default_factory=SafetyConfig)
    max_command_age_s: float = 0.02  # two state periods at 100 Hz
    release_m: float = 0.03  # furthest the release moves the tool
    release_speed: float = 0.04  # m/s
    # a body pushing into the tool harder than half the cap is escaped from faster, up to
    # this speed at the cap (a flinch: the arm's inertia must give way at the body's pace)
    escape_speed: float = 0.25
    release_decel_m: float = 0.008  # the release slows to a stop over its last this (no jolt)
    settle_m: float = 0.0005  # the release holds once the tool is this close to its end
    settle_s: float = 0.5  # or after this long
    max_releases: int = 3  # still pressed after a release: release again, this many at most
    contact_n: float = 1.0  # a measured force below this is out of contact
    contact_window: int = 5  # states averaged for that decision (a sensor's noise)
    # a force reading that falls from at least this to exactly zero in one state, the tool not
    # lifting off the surface, is libfranka's zero near singularities, not a contact ending
    zero_drop_min_n: float = 2.0
    lift_off_m: float = 0.0001  # the tool moved out along the normal this far: it lifts off
    recontact_margin_n: float = 1.0  # force this far above the hold's: released again
    reference_lead_s: float = 0.0  # a moving reference is set this far ahead (impedance lag)
    max_lead_m: float = 0.02
    max_rate_rad_s: float = 0.5
    tare_s: float = 0.5  # the wrench's zero: its mean over this long standing still at start
    tare_max_n: float = 10.0  # a larger zero is a contact, not a bias
    # the tool this far off its commanded orientation for pose_error_s, in contact or with the
    # reference still: the arm does not reach the pose (a joint at its limit), so the ball
    # presses somewhere else than planned. The orientation, not the position: in contact the
    # reference lies inside the body by design and a tilted ball's gap to it is no error
    max_turn_deg: float = 8.0
    pose_error_s: float = 0.3
    still_speed: float = 0.02  # m/s: a slower reference is still (the arm has caught up)
    still_rate_rad_s: float = 0.05


@dataclass
class Reference:
    """What the arm is sent: the tool point's pose and, when it moves, its twist."""

    position: np.ndarray
    quaternion: np.ndarray
    twist: np.ndarray | None = None  # v, w (m/s, rad/s); None: hold


@dataclass
class Report:
    """One line for the events stream: ``kind`` error (a fault latched) or released."""

    kind: str
    fault: str
    detail: str


def force_of(wrench: np.ndarray) -> float:
    """|force| of a wrench; NaN when any component is not finite."""
    w = np.asarray(wrench, float)
    if w.shape != (6,) or not np.all(np.isfinite(w)):
        return float("nan")
    return float(np.linalg.norm(w[:3]))


class Supervisor:
    """The safety state machine (see the module docstring)."""

    def __init__(self, config: SupervisorConfig):
        self.cfg = config
        self.mode = "waiting"
        self.fault = ""
        self.detail = ""
        self.reports: list[Report] = []
        self.reference: Reference | None = None
        self.tool: tuple[np.ndarray, np.ndarray] | None = None  # latest position, quaternion
        self.force = 0.0  # latest measured |force|, NaN when unknown
        self._forces: deque[float] = deque(maxlen=max(config.contact_window, 1))
        self.force_trusted = True  # false once the sensor was found faulty
        self.normal: np.ndarray | None = None  # last surface normal the controller gave
        self.last_command_t: float | None = None
        self.now = 0.0
        self.done = False  # the session said it is over
        # start, direction, which release this is
        self._release: tuple[np.ndarray, np.ndarray, int] | None = None
        self._released_s = 0.0  # how far the release's reference has gone (m)
        self._settle_t = 0.0  # robot time the release's reference stopped
        self._release_t = 0.0  # robot time of its last step
        self._hold_force = 0.0
        self._wrench: np.ndarray | None = None
        self.tare = StartTare(config.tare_s, config.tare_max_n)
        self._target: np.ndarray | None = None  # the last command's point, before its lead
        self._stale = ""  # why the commands since the last followed one were refused
        self._off_pose_since: float | None = None  # robot time the tool left its pose

    # --- state -------------------------------------------------------------------------
    @property
    def contact_force(self) -> float:
        """|force| over the last ``contact_window`` states (NaN when one is unknown): what
        contact is judged on, a single noisy reading being no contact."""
        return float(np.mean(self._forces)) if self._forces else self.force

    @property
    def in_contact(self) -> bool:
        """The tool may touch the body: the force says so, or cannot tell."""
        force = self.contact_force
        return not (self.force_trusted and np.isfinite(force) and force < self.cfg.contact_n)

    @property
    def wrench(self) -> np.ndarray:
        """The latest wrench reading less the start's zero (what the node publishes)."""
        return np.zeros(6) if self._wrench is None else self._wrench

    @property
    def latched(self) -> bool:
        return bool(self.fault)

    @property
    def status(self) -> str:
        """RobotState.status: waiting | ok | finished | faulted:<name>."""
        if self.fault:
            return f"faulted:{self.fault}"
        return {"follow": "ok"}.get(self.mode, self.mode)

    def take_reports(self) -> list[Report]:
        """The lines to send since the last call."""
        out, self.reports = self.reports, []
        return out

    # --- inputs --------------------------------------------------------------------------
    def on_state(self, t: float, tool_position: np.ndarray, tool_quaternion: np.ndarray,
                 wrench: np.ndarray) -> Reference:
        """One robot state at robot time ``t`` (s): checks, then the reference to send."""
        self.now = t
        p, q = np.asarray(tool_position, float), np.asarray(tool_quaternion, float)
        lifting = self.tool is not None and self.normal is not None and \
            float((p - self.tool[0]) @ self.normal) > self.cfg.lift_off_m
        self.tool = (p, q)
        wrench = self.tare.reading(t, np.asarray(wrench, float), self.mode != "waiting")
        self._wrench = wrench
        previous, force = self.force, force_of(wrench)
        self.force = force
        self._forces.append(force)
        if self.reference is None:
            self.reference = Reference(p.copy(), q.copy())
        if not np.isfinite(force):
            self.force_trusted = False
            self.on_fault("wrench_invalid", "the force reading is not finite")
        elif (force == 0.0 and self.mode in ("waiting", "follow") and self.force_trusted
              and np.isfinite(previous) and previous >= self.cfg.zero_drop_min_n
              and not lifting):
            # a real sensor's noise is never exactly zero: libfranka reports an all-zero
            # wrench near singularities (a free tool in a noiseless simulation does too, so
            # only a clear press that drops to zero in one state, the tool not lifting off
            # the surface, counts)
            self.force_trusted = False
            self.on_fault("wrench_invalid", f"the force reading dropped from {previous:.1f} N to "
                      "exactly zero (libfranka reports zero near singularities)")
        elif self.tare.problem and not self.latched:
            self.on_fault("wrench_tare", self.tare.problem)
        elif self.force_trusted and force > self.cfg.safety.force_cap_n:
            self.on_fault("force_cap", f"contact force {force:.1f} N over the cap "
                      f"{self.cfg.safety.force_cap_n} N")
        if self.mode == "follow" and not self.latched:
            if outside := outside_workspace(p, self.cfg.safety):
                self.on_fault("workspace", f"the tool left the workspace box: its position "
                          f"{outside}")
            elif (self.last_command_t is not None
                  and t - self.last_command_t > self.cfg.safety.watchdog_s):
                if self._stale:
                    self.on_fault("stale_command", f"{self._stale} for "
                              f"{t - self.last_command_t:.2f} s")
                else:
                    self.on_fault("watchdog", f"no command for {t - self.last_command_t:.2f} s")
        if self.mode == "follow" and not self.latched:
            self._check_pose(t, q)
        if self.done and not self.latched and self.mode != "finished":
            self._finish_or_release()
        if self.mode == "release":
            self._step_release(t, p)
        elif self.mode == "settle":
            self._settle(t, p)
        elif self.mode == "hold" and self.force_trusted and np.isfinite(force) \
                and force > self._hold_force + self.cfg.recontact_margin_n:
            self._start_release(t, p, self._wrench)
        return self.reference

    def on_command(self, t: float, stamp_t: float, position: np.ndarray,
                   quaternion: np.ndarray, twist: np.ndarray, mode: str,
                   normal: np.ndarray | None = None) -> Reference | None:
        """A command computed from the robot state at ``stamp_t`` arriving at robot time
        ``t``: the reference to send, or None when it is not followed."""
        if self.latched or self.done or self.tool is None:
            return None
        cfg = self.cfg
        age = t - stamp_t
        if age > cfg.max_command_age_s + 1e-9:
            # never executed; only a stream that stays stale for WATCHDOG_S latches (a loaded
            # machine delays one command now and then)
            self._stale = f"commands {age * 1000:.0f} ms old (max " \
                f"{cfg.max_command_age_s * 1000:.0f} ms)"
            return None
        self._stale = ""
        tool_p, _ = self.tool
        if outside := outside_workspace(tool_p, cfg.safety):
            self.on_fault("workspace", f"the tool left the workspace box: its position {outside}")
            return None
        problem = command_problem(np.asarray(position, float), np.asarray(quaternion, float),
                                  tool_p, cfg.safety)
        v = np.asarray(twist, float)
        if problem is None and feed_forward(v, cfg.safety) is None:
            problem = f"command twist {v.tolist()} is not 6 finite numbers"
        if problem is not None:
            self.on_fault("bad_command", problem)
            return None
        n = None if normal is None else np.asarray(normal, float)
        if n is not None and n.shape == (3,) and np.all(np.isfinite(n)) \
                and np.linalg.norm(n) > 0.5:
            self.normal = n / np.linalg.norm(n)
        if mode == "stop":
            self.on_fault("controller_stop", "the force controller stopped the motion")
            return None
        period = 0.01 if self.last_command_t is None else \
            min(max(t - self.last_command_t, 0.0), 0.05)
        self.last_command_t = t
        previous = self._target if self._target is not None else tool_p
        target = rate_limit(previous, np.asarray(position, float), cfg.safety.max_speed,
                            period)
        feed = feed_forward(v, cfg.safety, cfg.max_rate_rad_s) if mode == "track" else None
        final = target.copy()
        if feed is not None:
            lead = feed[:3] * cfg.reference_lead_s
            if np.linalg.norm(lead) > cfg.max_lead_m:
                lead *= cfg.max_lead_m / np.linalg.norm(lead)
            final = target + lead
        # the reference the arm really gets, lead included, inside the box and the gap
        if outside := outside_workspace(final, cfg.safety):
            self.on_fault("bad_command", f"command reference {outside}")
            return None
        self.mode = "follow"
        self._target = target
        self.reference = Reference(final, np.asarray(quaternion, float), feed)
        return self.reference

    def on_done(self) -> None:
        """The session is over: finish when out of contact, else release first."""
        self.done = True
        if not self.latched:
            self._finish_or_release()

    @property
    def finished(self) -> bool:
        """Nothing is left to do: the session ended out of contact, or a fault's release has
        moved the whole ``release_m`` and holds."""
        return self.mode in ("finished", "hold")

    # --- internals -----------------------------------------------------------------------
    def on_fault(self, name: str, detail: str) -> None:
        """Latch fault ``name`` (the first one wins; an error event, the e-stop, a closed
        command input, a lost link, an arm error come from outside) and release contact."""
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}")
        if self.latched:
            return
        self.fault, self.detail = name, detail
        self.reports.append(Report("error", name, detail))
        if self.tool is None:
            return
        if self.in_contact:
            self._start_release(self.now, self.tool[0], self._wrench)
            return
        # out of contact (the force says so): nothing to release, the arm stops where it is
        self.mode = "hold"
        self._hold_force = self.contact_force
        self.reference = Reference(self.tool[0].copy(), self.tool[1].copy())
        self.reports.append(Report("released", name, f"out of contact "
                                   f"({self.contact_force:.1f} N); holding where it stands"))

    def turn_error(self, quaternion: np.ndarray) -> float:
        """How far (deg) the tool's orientation is turned from the last command's."""
        q_ref = self.reference.quaternion
        dot = abs(float(np.dot(q_ref, quaternion))) / max(
            float(np.linalg.norm(q_ref) * np.linalg.norm(quaternion)), 1e-12)
        return float(np.degrees(2.0 * np.arccos(min(dot, 1.0))))

    def _check_pose(self, t: float, quaternion: np.ndarray) -> None:
        """The tool turned off its commanded orientation, in contact or with the reference
        (nearly) still (a moving arm may lag its reference, a still one does not)."""
        cfg = self.cfg
        turn = self.turn_error(quaternion)
        twist = self.reference.twist
        still = twist is None or (np.linalg.norm(twist[:3]) < cfg.still_speed
                                  and np.linalg.norm(twist[3:]) < cfg.still_rate_rad_s)
        contact = self.in_contact
        if turn <= cfg.max_turn_deg or not (contact or still):
            self._off_pose_since = None
            return
        if self._off_pose_since is None:
            self._off_pose_since = t
        elif t - self._off_pose_since >= cfg.pose_error_s:
            self.on_fault("pose_error", f"{'in contact' if contact else 'before contact'} the "
                          f"tool is turned {turn:.1f} deg off its commanded orientation for "
                          f"{t - self._off_pose_since:.2f} s (at most {cfg.max_turn_deg:.0f} "
                          "deg): the arm does not reach the pose (a joint at its limit, or "
                          "something in the way); move the body or the arm")

    def _finish_or_release(self) -> None:
        if self.in_contact and self.tool is not None:
            self.on_fault("done_in_contact", f"the session ended with "
                          f"{self.contact_force:.1f} N of contact force")
        else:
            self.mode = "finished"
            if self.tool is not None:
                self.reference = Reference(self.tool[0].copy(), self.tool[1].copy())

    def _direction(self, wrench: np.ndarray | None) -> np.ndarray:
        """Away from the body: against the measured force, along the last surface normal,
        or straight up."""
        if wrench is not None and self.force_trusted:
            f = np.asarray(wrench, float)[:3]
            if np.all(np.isfinite(f)) and np.linalg.norm(f) >= self.cfg.contact_n:
                return retreat_point(np.zeros(3), wrench, 1.0)
        if self.normal is not None:
            return self.normal.copy()
        return np.array([0.0, 0.0, 1.0])

    def _start_release(self, t: float, position: np.ndarray,
                       wrench: np.ndarray | None, count: int = 1) -> None:
        direction = self._direction(wrench)
        self.mode = "release"
        self._release = (np.asarray(position, float).copy(), direction, count)
        self._released_s, self._release_t = 0.0, t
        q = self.tool[1] if self.tool is not None else np.array([0.0, 0.0, 0.0, 1.0])
        self.reference = Reference(self._release[0].copy(), q.copy(), np.concatenate(
            [direction * self._release_speed(), np.zeros(3)]))

    def _release_speed(self) -> float:
        """RELEASE_SPEED, rising to ``escape_speed`` as the measured force goes from half the
        cap to the cap (a body pushing into the tool)."""
        cfg = self.cfg
        cap = cfg.safety.force_cap_n
        if not (self.force_trusted and np.isfinite(self.force)):
            return cfg.release_speed
        share = float(np.clip((self.force - cap / 2) / (cap / 2), 0.0, 1.0))
        return cfg.release_speed + share * max(cfg.escape_speed - cfg.release_speed, 0.0)

    def _step_release(self, t: float, position: np.ndarray) -> None:
        """Advance the release by one state: at the release speed (faster while the body
        pushes hard), slowing to a stop over the last ``release_decel_m`` (a constant
        deceleration from RELEASE_SPEED), never behind where the body pushed the tool."""
        cfg = self.cfg
        start, direction, count = self._release
        travelled = float((position - start) @ direction)
        dt = float(np.clip(t - self._release_t, 0.0, 0.05))
        self._release_t = t
        decel = min(cfg.release_decel_m, cfg.release_m / 2)
        s = max(self._released_s, min(travelled, cfg.release_m))
        remaining = cfg.release_m - s
        speed = self._release_speed()
        if speed <= cfg.release_speed + 1e-12 and remaining < decel:
            # at a constant deceleration sqrt(remaining) falls linearly with time
            root = max(np.sqrt(remaining) - cfg.release_speed * dt / (2 * np.sqrt(decel)), 0.0)
            s_next = cfg.release_m - root * root
            speed = cfg.release_speed * root / np.sqrt(decel)
        else:
            s_next = min(s + speed * dt, cfg.release_m)
        self._released_s = s_next
        if s_next >= cfg.release_m - 1e-9:
            if self.in_contact and self.force_trusted and count < cfg.max_releases:
                self._start_release(t, position, self._wrench, count + 1)  # the body followed
                return
            self.mode = "settle"
            self._settle_t = t
            self.reference = Reference(start + direction * max(cfg.release_m, travelled),
                                       self.reference.quaternion)
            return
        # never pull the tool back towards the body: a body pushing it away is let go
        self.reference = Reference(start + direction * max(s_next, travelled),
                                   self.reference.quaternion,
                                   np.concatenate([direction * speed, np.zeros(3)]))

    def _settle(self, t: float, position: np.ndarray) -> None:
        """The release's reference has stopped: hold once the tool has caught up with it
        (within ``settle_m``, or after ``settle_s``), and say so."""
        cfg = self.cfg
        start, direction, count = self._release
        off = float(np.linalg.norm(position - self.reference.position))
        if off > cfg.settle_m and t - self._settle_t < cfg.settle_s:
            return
        self.mode = "hold"
        self._hold_force = self.force if np.isfinite(self.force) else 0.0
        travelled = float((position - start) @ direction)
        where = "out of contact" if not self.in_contact else (
            "the force cannot tell" if not self.force_trusted else "still pressed")
        again = f" (release {count})" if count > 1 else ""
        self.reports.append(Report("released", self.fault, f"moved "
                                   f"{max(travelled, 0.0) * 1000:.0f} mm away{again}, "
                                   f"{where} ({self.force:.1f} N); holding"))
