"""Session scoring: what the summary of a massage session says."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tuina.operators.geometry import angle_between_deg, polyline_distances, quat_to_matrix
from tuina.operators.tracking import rotation_angle_deg


@dataclass(frozen=True)
class SessionLimits:
    """Bounds a session must stay within to be ok."""

    max_acupoint_error_mm: float = 10.0
    max_normal_error_deg: float = 10.0
    max_force_rms_error_n: float = 1.5
    force_cap_n: float = 15.0
    max_stroke_error_mm: float = 10.0  # a drawn stroke: the tool's mean distance to its line
    min_contact_s: float = 1.0
    settle_s: float = 0.8  # first part of the press excluded from the steady statistics
    follow_settle_s: float = 0.2  # first part of each contact excluded from the follow error


@dataclass
class SessionLog:
    """Samples gathered while the session runs (event time in seconds)."""

    force_t: list[float] = field(default_factory=list)
    force_n: list[float] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    force_target_n: float = 0.0
    contact_errors_mm: list[float] = field(default_factory=list)
    normal_error_deg: float = float("nan")
    max_force_n: float = 0.0
    errors: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)  # the robot's latched faults, by name
    released_t: float | None = None  # event time the robot reported contact released, s
    first_contact_s: float | None = None
    first_contact_t: float | None = None  # event time of the first contact, s
    follow_t: list[float] = field(default_factory=list)  # press / stroke samples with the
    follow_mm: list[float] = field(default_factory=list)  # contact-to-acupoint distance
    # the same contact-to-acupoint offset in the body's frame (mm): what the body's motion
    # changes when the tool does not follow it
    follow_offsets: list[list[float]] = field(default_factory=list)
    motion_t: list[float] = field(default_factory=list)  # body_motion stamps
    motion_status: list[str] = field(default_factory=list)
    tracking_err_mm: list[float] = field(default_factory=list)  # at the target, vs the truth
    tracking_err_deg: list[float] = field(default_factory=list)
    aborts: list[str] = field(default_factory=list)
    regrounds: int = 0
    pauses: int = 0  # the person paused the step (each resume sent it again)
    truth_t: list[float] = field(default_factory=list)  # ground-truth frames
    truth_peak_n: list[float] = field(default_factory=list)  # largest contact force since
    stroke_mm: list[float] = field(default_factory=list)  # contact point to planned path
    # the world's true normal contact force at the target, per ground-truth frame
    true_t: list[float] = field(default_factory=list)
    true_force_n: list[float] = field(default_factory=list)
    true_phases: list[str] = field(default_factory=list)


def overshoot(t: np.ndarray, peaks: np.ndarray, first_contact_t: float | None, target_n: float,
              window_s: float = 1.0) -> float:
    """Largest contact force above the target within ``window_s`` of the first contact."""
    if first_contact_t is None or not len(t):
        return float("nan")
    near = (t >= first_contact_t) & (t <= first_contact_t + window_s)
    return float(max(peaks[near].max() - target_n, 0.0)) if near.any() else float("nan")


def loop_timing(stamps_s: np.ndarray) -> tuple[float, float]:
    """Rate (Hz) and p99 of |period - median period| (ms) of a loop's output stamps."""
    if len(stamps_s) < 3:
        return 0.0, float("nan")
    periods = np.diff(stamps_s)
    rate = (len(stamps_s) - 1) / (stamps_s[-1] - stamps_s[0])
    return float(rate), float(np.percentile(np.abs(periods - np.median(periods)), 99) * 1e3)


def moved_path(path: np.ndarray, rotation_ref: np.ndarray, anchor_ref: np.ndarray,
               rotation_now: np.ndarray, anchor_now: np.ndarray) -> np.ndarray:
    """A surface path carried with the body: its rotation and one of its points (the
    target acupoint) then and now."""
    return (path - anchor_ref) @ (rotation_now @ rotation_ref.T).T + anchor_now


def distance_to_path(point: np.ndarray, path: np.ndarray) -> float:
    """Distance from a point to a polyline."""
    return float(polyline_distances(point, path)[0])


def contact_breaks(t: np.ndarray, gap_s: float = 0.25) -> int:
    """How often contact during the press / stroke was lost (gaps longer than ``gap_s``)."""
    return int(np.sum(np.diff(t) > gap_s)) if len(t) > 1 else 0


def follow_errors(t: np.ndarray, err: np.ndarray, settle_s: float,
                  gap_s: float = 0.25) -> np.ndarray:
    """Errors of in-contact samples, each contact's first ``settle_s`` left out.

    A contact is a run of samples no more than ``gap_s`` apart.
    """
    if len(t) == 0:
        return np.zeros(0)
    starts = np.concatenate([[True], np.diff(t) > gap_s])
    episode_start = t[np.maximum.accumulate(np.where(starts, np.arange(len(t)), 0))]
    return err[t - episode_start >= settle_s]


def follow_drift(t: np.ndarray, offsets: np.ndarray, settle_s: float,
                 reference_s: float = 0.5) -> np.ndarray:
    """How far the tool's offset from the acupoint, in the body's frame, moved from where
    it sat over the first ``reference_s`` of settled contact: what following the body
    failed to keep, without the acupoint's perception error that sets the offset itself."""
    if len(t) == 0:
        return np.zeros(0)
    settled = follow_errors(t, np.arange(len(t)), settle_s).astype(int)
    if not len(settled):
        return np.zeros(0)
    start = t[settled[0]]
    early = settled[t[settled] <= start + reference_s]
    reference = np.median(offsets[early], axis=0)
    return np.linalg.norm(offsets[settled] - reference, axis=1)


def force_figures(t: np.ndarray, f: np.ndarray, phases: np.ndarray, target_n: float,
                  limits: SessionLimits) -> dict[str, float]:
    """Force against the target over a session's samples (time, force, phase): mean and RMS
    error over the settled press (its first ``settle_s`` left out), RMS error over the whole
    contact (press and stroke samples from the first over 1 N), and over the stroke (its
    first ``follow_settle_s`` left out). NaN where there is no such sample."""
    def rms(mask: np.ndarray) -> float:
        return float(np.sqrt(np.mean((f[mask] - target_n) ** 2))) if mask.any() else math.nan

    press = phases == "press"
    steady = press & (t >= t[press][0] + limits.settle_s) if press.any() else press
    massage = (phases == "press") | (phases == "stroke")
    touched = massage & (f > 1.0)
    whole = massage & (t >= t[touched][0]) if touched.any() else touched
    stroke = phases == "stroke"
    if stroke.any():
        stroke &= t >= t[stroke][0] + limits.follow_settle_s
    return {"force_mean_n": float(np.mean(f[steady])) if steady.any() else math.nan,
            "force_rms_error_n": rms(steady), "force_rms_error_whole_n": rms(whole),
            "stroke_rms_error_n": rms(stroke)}


def summarize(log: SessionLog, duration_s: float, limits: SessionLimits,
              drawn: bool = False) -> dict:
    """The summary dict: whether the session was ok, its problems, and its figures. In the
    simulated world the force figures are the world's true contact force; live, the
    controller's measured one (``force_source`` says which)."""
    t = np.asarray(log.force_t)
    f = np.asarray(log.force_n)
    phases = np.asarray(log.phases)
    in_contact = f > 1.0
    dt = np.diff(t, append=t[-1]) if len(t) else np.zeros(0)
    contact_s = float(np.sum(dt[in_contact])) if len(t) else 0.0
    measured = force_figures(t, f, phases, log.force_target_n, limits)
    true = force_figures(np.asarray(log.true_t), np.asarray(log.true_force_n),
                         np.asarray(log.true_phases), log.force_target_n, limits)
    figures = true if log.true_t else measured
    force_mean, rms = figures["force_mean_n"], figures["force_rms_error_n"]
    acu = float(np.median(log.contact_errors_mm)) if log.contact_errors_mm else float("nan")
    max_force = max(log.max_force_n, float(f.max()) if len(f) else 0.0)
    follow = follow_errors(np.asarray(log.follow_t), np.asarray(log.follow_mm),
                           limits.follow_settle_s)
    drift = follow_drift(np.asarray(log.follow_t), np.asarray(log.follow_offsets).reshape(-1, 3),
                         limits.follow_settle_s)
    mt = np.asarray(log.motion_t)
    ok_motion = np.asarray(log.motion_status) == "ok"
    statuses = {k: int(np.sum(np.asarray(log.motion_status) == k))
                for k in sorted(set(log.motion_status))}
    first_contact = log.first_contact_t
    control_hz, jitter_ms = loop_timing(t)
    problems = list(log.errors)
    if log.faults and not log.errors:
        problems.append(f"robot faults: {', '.join(log.faults)}")
    if contact_s < limits.min_contact_s:
        problems.append(f"contact lasted {contact_s:.1f} s (< {limits.min_contact_s} s)")
    if max_force > limits.force_cap_n:
        problems.append(f"force cap exceeded: {max_force:.1f} N > {limits.force_cap_n} N")
    truth = bool(log.truth_t)  # a live session has no ground truth to judge the target by
    stroke_mm = float(np.mean(log.stroke_mm)) if log.stroke_mm else float("nan")
    if drawn and log.truth_t:  # scored on what was drawn, not on an acupoint it lacks
        if log.contact_errors_mm and not acu <= limits.max_acupoint_error_mm:
            problems.append(f"clicked point error {acu:.1f} mm > "
                            f"{limits.max_acupoint_error_mm} mm")
        elif not log.contact_errors_mm and not stroke_mm <= limits.max_stroke_error_mm:
            problems.append(f"stroke path error {stroke_mm:.1f} mm > "
                            f"{limits.max_stroke_error_mm} mm")
    if drawn:
        truth = False
    if truth and not acu <= limits.max_acupoint_error_mm:
        problems.append(f"acupoint error {acu:.1f} mm > {limits.max_acupoint_error_mm} mm")
    if truth and not log.normal_error_deg <= limits.max_normal_error_deg:
        problems.append(f"normal error {log.normal_error_deg:.1f} deg > "
                        f"{limits.max_normal_error_deg} deg")
    if not rms <= limits.max_force_rms_error_n:
        problems.append(f"force RMS error {rms:.2f} N > {limits.max_force_rms_error_n} N")
    return {
        "acupoint_error_mm": acu,
        "acupoint_error_mean_mm": (float(np.mean(log.contact_errors_mm))
                                   if log.contact_errors_mm else math.nan),
        "acupoint_error_max_mm": (float(np.max(log.contact_errors_mm))
                                  if log.contact_errors_mm else math.nan),
        "normal_error_deg": float(log.normal_error_deg),
        "force_target_n": float(log.force_target_n),
        "force_mean_n": force_mean,
        "force_rms_error_n": rms,
        "force_rms_error_whole_n": figures["force_rms_error_whole_n"],
        "force_source": "truth" if log.true_t else "measured",
        "measured_force_rms_error_n": measured["force_rms_error_n"],
        "max_force_n": float(max_force),
        "contact_s": contact_s,
        "duration_s": float(duration_s),
        "first_contact_s": log.first_contact_s,
        "follow_err_mm": float(np.mean(follow)) if len(follow) else float("nan"),
        "overshoot_n": overshoot(np.asarray(log.truth_t), np.asarray(log.truth_peak_n),
                                 first_contact, log.force_target_n),
        "stroke_rms_error_n": figures["stroke_rms_error_n"],
        "stroke_tracking_mm": stroke_mm,
        "stroke_tracking_max_mm": (float(np.max(log.stroke_mm)) if log.stroke_mm
                                   else float("nan")),
        # the command stamps' rate in simulated time (live: the robot's clock); the loop in
        # wall time is the robot node's own "loop" line
        "sim_clock_command_hz": control_hz,
        "sim_clock_period_jitter_p99_ms": jitter_ms,
        "contact_breaks": contact_breaks(np.asarray(log.follow_t)),
        "follow_err_p95_mm": float(np.percentile(follow, 95)) if len(follow) else float("nan"),
        "follow_err_max_mm": float(np.max(follow)) if len(follow) else float("nan"),
        "follow_drift_mm": float(np.mean(drift)) if len(drift) else float("nan"),
        "follow_drift_max_mm": float(np.max(drift)) if len(drift) else float("nan"),
        "tracking_err_mm": (float(np.mean(log.tracking_err_mm)) if log.tracking_err_mm
                            else float("nan")),
        "tracking_err_deg": (float(np.mean(log.tracking_err_deg)) if log.tracking_err_deg
                             else float("nan")),
        "body_motion_hz": (float((len(mt) - 1) / (mt[-1] - mt[0])) if len(mt) > 1
                           and mt[-1] > mt[0] else 0.0),
        "body_motion_ok": float(ok_motion.mean()) if len(mt) else float("nan"),
        "body_motion_statuses": statuses,
        "aborts": list(log.aborts),
        "regrounds": log.regrounds,
        "pauses": log.pauses,
        "faults": list(log.faults),
        "released_t": log.released_t,
        "ok": not problems,
        "problems": problems,
    }


DRAWN = "STROKE"  # the code of a stroke drawn on the image (no acupoint)
CLICKED = "POINT"  # the code of a point clicked on the image (no acupoint)
INTENDED_FAULTS = ("estop",)  # asked for by a person: the session fails, the graph ends cleanly


@dataclass
class SessionEnding:
    """When a session ends, from its events and event time (no clock inside): at ``done``;
    after an error once the robot reported contact released (or ``release_wait_s`` later);
    after an abort when no new target came within ``replan_wait_s``; at ``timeout_s`` of a
    step. A paused step waits without a timeout; its resume starts the step's clock again."""

    release_wait_s: float
    replan_wait_s: float
    timeout_s: float
    first_ns: int | None = None
    error_ns: int | None = None  # the first error: the session ends after the release
    released: bool = False
    abort_ns: int | None = None  # the last abort not yet followed by a new target
    ended: str | None = None  # why it ended ("" when nothing went wrong); None: not yet
    paused: bool = False  # the person paused the step: no timeout runs until they resume

    def on_error(self, stamp: int) -> bool:
        """An error: True when the session now waits for the robot's release."""
        if self.released:
            self.ended = ""
            return False
        if self.error_ns is None:
            self.error_ns = stamp
            return True
        return False

    def on_released(self) -> None:
        self.released = True
        if self.error_ns is not None:
            self.ended = ""

    def on_done(self) -> None:
        self.ended = ""

    def on_abort(self, stamp: int) -> None:
        self.abort_ns = stamp

    def on_target(self) -> None:
        self.abort_ns = None

    def on_pause(self) -> None:
        self.paused = True

    def on_resume(self, stamp: int) -> None:
        """The step is sent again: its timeout starts over and a new target must come within
        ``replan_wait_s``."""
        self.paused = False
        self.first_ns, self.abort_ns = stamp, stamp

    def due(self, stamp: int, phase: str) -> str | None:
        """None while the session goes on; else why it ends ("" when nothing went wrong)."""
        self.first_ns = stamp if self.first_ns is None else self.first_ns
        if self.ended is not None:
            return self.ended
        if self.paused and self.error_ns is None:
            return None  # the arm holds off the body for as long as the person needs
        if self.error_ns is not None:
            if (stamp - self.error_ns) * 1e-9 > self.release_wait_s:
                return (f"the robot did not report contact released within "
                        f"{self.release_wait_s:g} s of the error")
        elif self.abort_ns is not None and (stamp - self.abort_ns) * 1e-9 > self.replan_wait_s:
            return f"no new target within {self.replan_wait_s:g} s after the abort"
        if (stamp - self.first_ns) * 1e-9 > self.timeout_s:
            return (f"session timed out after {self.timeout_s} s in phase "
                    f"{phase or 'before planning'}")
        return None


def exit_code(ok: bool, faults: list[str]) -> int:
    """0 for an ok session or one the operator stopped (an intended stop is not a crash)."""
    intended = bool(faults) and all(f in INTENDED_FAULTS for f in faults)
    return 0 if ok or intended else 1


class SessionWatch:
    """Everything the session node hears, gathered into a ``SessionLog`` and a
    ``SessionEnding``. Messages come in duck-typed (the fields of tuina.messages' types), so
    this stays free of the runtime; stamps are event time in ns."""

    MAX_TRUTHS = 900  # a minute of ground-truth frames at 15 Hz
    MAX_WAITING = 100  # body motions waiting for their frame's truth

    def __init__(self, ending: SessionEnding) -> None:
        self.log = SessionLog()
        self.ending = ending
        self.target: Any = None
        self.phase = ""
        self.first_ns: int | None = None
        self.last_ns = 0
        # truth by frame stamp (body rotation, acupoints), to score the tracker's motions
        self.truths: dict[int, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        self.waiting: dict[int, Any] = {}
        # the steps of a session the console runs: each is scored on its own
        self.steps: list[dict[str, Any]] = []
        self.step: dict[str, Any] = {"index": 1, "text": "", "drawn": False}
        self.last_step = True  # no console says otherwise: the first step is the last
        self.idle = False  # between steps: waiting for a person, no timeout
        self.step_complete = False  # the running step's trajectory is done; more follow

    def next_step(self, summary: dict[str, Any]) -> None:
        """The running step is scored: keep its summary, start an empty log."""
        self.steps.append(summary)
        self.log = SessionLog()
        old = self.ending
        self.ending = SessionEnding(old.release_wait_s, old.replan_wait_s, old.timeout_s)
        self.target, self.phase, self.step_complete, self.idle = None, "", False, True

    def heard(self, stamp: int) -> None:
        """Any input's stamp: the session's event time."""
        self.first_ns = stamp if self.first_ns is None else self.first_ns
        self.last_ns = max(self.last_ns, stamp)

    @property
    def duration_s(self) -> float:
        return (self.last_ns - (self.first_ns or self.last_ns)) * 1e-9

    def on_event(self, event: Any, stamp: int) -> str | None:
        """A SessionEvent from any node; the line to print when it changes the ending."""
        log = self.log
        if event.kind == "error":
            log.errors.append(event.detail)
            if event.fault and event.fault not in log.faults:
                log.faults.append(event.fault)
            # the wait counts from when the session hears of it: an error's own stamp is its
            # input frame's, which a slow node (a long planning search) left behind
            if self.ending.on_error(self.last_ns):
                return "waiting for the robot to release contact before ending"
        elif event.kind == "released":
            self.ending.on_released()
            log.released_t = log.released_t or stamp * 1e-9
        elif event.kind == "done":
            if self.last_step:
                self.ending.on_done()
            else:
                self.step_complete = True
        elif event.kind == "step":
            import json

            self.step = json.loads(event.detail)
            self.last_step, self.idle = bool(self.step.get("last", True)), False
            self.ending.first_ns = self.last_ns  # each step's timeout counts from its start
        elif event.kind == "finish":
            self.last_step = True
            if self.idle:
                self.ending.on_done()
        elif event.kind == "abort":
            log.aborts.append(event.detail)
            self.ending.on_abort(self.last_ns)
            return (f"{event.detail}; re-grounding, the session ends if no new target comes "
                    f"within {self.ending.replan_wait_s:g} s")
        elif event.kind == "reground":
            log.regrounds += 1
        elif event.kind == "pause":
            log.pauses += 1
            self.ending.on_pause()
            return f"paused: {event.detail}; the arm holds off the body until resumed"
        elif event.kind == "resume":
            self.ending.on_resume(self.last_ns)
            return (f"resumed: the step is grounded again; the session ends if no new target "
                    f"comes within {self.ending.replan_wait_s:g} s")
        return None

    def on_target(self, target: Any) -> None:
        """A TargetPose: what the session is now about."""
        self.target = target
        self.ending.on_target()

    def on_command(self, command: Any, stamp: int) -> None:
        """A Command: the phase and the force the controller measured."""
        log, t = self.log, stamp * 1e-9
        self.phase = command.phase
        log.force_t.append(t)
        log.force_n.append(command.force_measured_n)
        log.phases.append(command.phase)
        if command.force_target_n > 0:
            log.force_target_n = command.force_target_n
        if log.first_contact_s is None and command.force_measured_n > 1.0:
            log.first_contact_s = t - (self.first_ns or stamp) * 1e-9
            log.first_contact_t = t

    def on_body_motion(self, motion: Any, stamp: int) -> None:
        """A BodyMotion: scored against the truth of its frame (now or when it comes)."""
        self.log.motion_t.append(stamp * 1e-9)
        self.log.motion_status.append(motion.status)
        if motion.status != "ok":
            return
        if stamp in self.truths:
            self._score_motion(stamp, motion)
        else:
            self.waiting[stamp] = motion

    def _score_motion(self, stamp: int, motion: Any) -> None:
        ref, now = self.truths.get(motion.reference_stamp_ns), self.truths.get(stamp)
        code = self.target.code if self.target is not None else None
        if ref is None or now is None or code not in ref[1]:
            return
        R = np.asarray(motion.rotation).reshape(3, 3)
        moved = R @ ref[1][code] + np.asarray(motion.translation)
        self.log.tracking_err_mm.append(float(np.linalg.norm(moved - now[1][code]) * 1000))
        self.log.tracking_err_deg.append(rotation_angle_deg(R.T @ now[0] @ ref[0].T))

    def on_truth(self, truth: Any, stamp: int) -> None:
        """A GroundTruth frame of the simulated world: the scores against the truth."""
        log = self.log
        log.max_force_n = max(log.max_force_n, truth.max_contact_force_n)
        log.truth_t.append(stamp * 1e-9)
        log.truth_peak_n.append(truth.max_contact_force_n)
        points = np.asarray(truth.acupoint_positions).reshape(-1, 3)
        self.truths[stamp] = (quat_to_matrix(np.asarray(truth.body_quaternion)),
                              dict(zip(truth.acupoint_codes, points, strict=True)))
        while len(self.truths) > self.MAX_TRUTHS:
            self.truths.pop(next(iter(self.truths)))
        if stamp in self.waiting:
            self._score_motion(stamp, self.waiting.pop(stamp))
        while len(self.waiting) > self.MAX_WAITING:
            self.waiting.pop(next(iter(self.waiting)))
        target = self.target
        if target is not None and target.code in (DRAWN, CLICKED) and truth.acupoint_codes:
            self._score_drawn(truth, stamp, points)
            return
        if target is None or target.code not in truth.acupoint_codes:
            return
        k = truth.acupoint_codes.index(target.code)
        acu = points[k]
        if math.isnan(log.normal_error_deg):
            true_normal = np.asarray(truth.acupoint_normals).reshape(-1, 3)[k]
            log.normal_error_deg = angle_between_deg(np.asarray(target.normal), true_normal)
        normal = np.asarray(truth.acupoint_normals).reshape(-1, 3)[k]
        log.true_t.append(stamp * 1e-9)
        log.true_force_n.append(float(-np.asarray(truth.contact_force) @ normal))
        log.true_phases.append(self.phase)
        contact = np.asarray(truth.contact_point)
        if not np.all(np.isfinite(contact)):
            return
        if self.phase == "press":
            log.contact_errors_mm.append(float(np.linalg.norm(contact - acu) * 1000))
        if self.phase not in ("press", "stroke") or np.linalg.norm(truth.contact_force) <= 1.0:
            return
        if self.phase == "stroke":
            ref = self.truths.get(target.source_stamp_ns)
            path = np.asarray(target.path).reshape(-1, 3)
            if ref is not None and target.code in ref[1]:
                path = moved_path(path, ref[0], ref[1][target.code], self.truths[stamp][0], acu)
            log.stroke_mm.append(distance_to_path(contact, path) * 1000)
        log.follow_t.append(stamp * 1e-9)
        log.follow_mm.append(float(np.linalg.norm(contact - acu) * 1000))
        log.follow_offsets.append(((contact - acu) @ self.truths[stamp][0] * 1000).tolist())

    def _score_drawn(self, truth: Any, stamp: int, points: np.ndarray) -> None:
        """A drawn stroke has no acupoint: the tool against the drawn line carried to the
        body (where the depth put it, moved with the body's true motion since that frame)
        and the true force along the target's normal."""
        log, target = self.log, self.target
        normal = np.asarray(target.normal, float)
        log.true_t.append(stamp * 1e-9)
        log.true_force_n.append(float(-np.asarray(truth.contact_force) @ normal))
        log.true_phases.append(self.phase)
        contact = np.asarray(truth.contact_point)
        clicked = target.code == CLICKED
        if self.phase != ("press" if clicked else "stroke") or \
                not np.all(np.isfinite(contact)) or np.linalg.norm(truth.contact_force) <= 1.0:
            return
        path = (np.asarray(target.position, float)[None] if clicked else
                np.asarray(target.path).reshape(-1, 3))
        ref = self.truths.get(target.source_stamp_ns)
        if ref is not None:  # any point of the body carries its rigid motion
            path = moved_path(path, ref[0], ref[1][truth.acupoint_codes[0]],
                              self.truths[stamp][0], points[0])
        distance = distance_to_path(contact, path) * 1000 if len(path) > 1 else \
            float(np.linalg.norm(contact - path[0]) * 1000)
        (log.contact_errors_mm if clicked else log.stroke_mm).append(distance)

    def due(self) -> str | None:
        """None while the session goes on; else why it ends ("" when nothing went wrong)."""
        if self.idle and self.ending.ended is None:
            return None
        return self.ending.due(self.last_ns, self.phase)
