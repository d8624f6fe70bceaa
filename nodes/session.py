"""session: watches a massage session, ends it, scores it and writes its summary.

Inputs: ``command`` (phase and forces, trigger of the force log), ``ground_truth`` (sim truth),
``target_pose``, ``body_motion`` (scored against the true body motion), and any number of
``events*`` inputs (errors, phases, aborts and re-grounding requests from other nodes).
Outputs: ``events`` (``done`` when the session is over: the world and the robot close).
After an error the session ends only once the robot reports it released contact (or after
RELEASE_WAIT_S); after an abort it waits REPLAN_WAIT_S for a new target, then ends. A
session with a robot fault is never ok; one ended by the operator's e-stop exits 0.
Writes ``<RECORDINGS_DIR>/<SESSION>/summary.json``; exits non-zero when the session failed.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
from tuina.operators.geometry import angle_between_deg, quat_to_matrix
from tuina.operators.session import (
    SessionEnding,
    SessionLimits,
    SessionLog,
    distance_to_path,
    exit_code,
    moved_path,
    summarize,
)
from tuina.operators.tracking import rotation_angle_deg

from tuina.messages import BodyMotion, Command, GroundTruth, SessionEvent, TargetPose
from tuina.node import Outputs, configure, events, stamp_of
from tuina.settings.session import PARAMS

# inputs whose closing does not end the session: any node but the world and the robot may
# die mid-session, and the session must still see the robot release contact
LASTING_INPUTS = ("command", "target_pose", "body_motion", "events_grounding",
                  "events_tracker", "events_pose_fit", "events_planner", "events_control")


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def main() -> None:
    """Watch until done, then write the summary."""
    cfg = configure("session", PARAMS)
    from dora import Node

    limits = SessionLimits(cfg["MAX_ACUPOINT_ERROR_MM"], cfg["MAX_NORMAL_ERROR_DEG"],
                           cfg["MAX_FORCE_RMS_ERROR_N"], cfg["FORCE_CAP_N"])
    name = cfg["SESSION"] or datetime.now().strftime("sim-%Y%m%d-%H%M%S")
    folder = Path(cfg["RECORDINGS_DIR"]) / name
    node = Node()
    out = Outputs(node)
    log = SessionLog()
    target: TargetPose | None = None
    phase = ""
    first_ns: int | None = None
    last_ns = 0
    summary: dict | None = None
    # truth by frame stamp (body rotation, target acupoint), to score the tracker's motions
    truths: dict[int, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    waiting: dict[int, BodyMotion] = {}

    def score_motion(stamp: int, bm: BodyMotion) -> None:
        ref, now = truths.get(bm.reference_stamp_ns), truths.get(stamp)
        if ref is None or now is None or target is None or target.code not in ref[1]:
            return
        R = np.asarray(bm.rotation).reshape(3, 3)
        moved = R @ ref[1][target.code] + np.asarray(bm.translation)
        log.tracking_err_mm.append(float(np.linalg.norm(moved - now[1][target.code]) * 1000))
        log.tracking_err_deg.append(rotation_angle_deg(R.T @ now[0] @ ref[0].T))

    def finish(stamp: int) -> None:
        nonlocal summary
        if summary is not None:
            return
        duration = (last_ns - (first_ns or last_ns)) * 1e-9
        summary = summarize(log, duration, limits)
        summary["session"] = name
        summary["target"] = target.code if target is not None else ""  # the point-side pressed
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=True))
        tmp.replace(folder / "summary.json")
        out.send("events", SessionEvent("done", "ok" if summary["ok"] else "failed").to_arrow(),
                 stamp, "-")
        print("session summary", flush=True)
        for key, value in summary.items():
            print(f"  {key:20s} {_fmt(value)}", flush=True)
        print(f"  written to {(folder / 'summary.json').resolve()}", flush=True)

    ending = SessionEnding(cfg["RELEASE_WAIT_S"], cfg["REPLAN_WAIT_S"], cfg["TIMEOUT_S"])
    for event in events(node, timers=LASTING_INPUTS, lineage=out.lineage):
        stamp = stamp_of(event)
        first_ns = stamp if first_ns is None else first_ns
        last_ns = max(last_ns, stamp)
        eid = event["id"]
        if eid.startswith("events"):
            ev = SessionEvent.from_arrow(event["value"])
            if ev.kind == "error":
                log.errors.append(ev.detail)
                if ev.fault and ev.fault not in log.faults:
                    log.faults.append(ev.fault)
                # the wait counts from when the session hears of it: an error's own stamp is
                # its input frame's, which a slow node (a long planning search) left behind
                if ending.on_error(last_ns):
                    print("session: waiting for the robot to release contact before ending",
                          flush=True)
            elif ev.kind == "released":
                ending.on_released()
                log.released_t = log.released_t or stamp * 1e-9
            elif ev.kind == "done":
                ending.on_done()
            elif ev.kind == "abort":
                log.aborts.append(ev.detail)
                ending.on_abort(last_ns)
                print(f"session: {ev.detail}; re-grounding, the session ends if no new "
                      f"target comes within {cfg['REPLAN_WAIT_S']:g} s", flush=True)
            elif ev.kind == "reground":
                log.regrounds += 1
        elif eid == "body_motion":
            bm = BodyMotion.from_arrow(event["value"])
            log.motion_t.append(stamp * 1e-9)
            log.motion_status.append(bm.status)
            if bm.status == "ok":
                if stamp in truths:
                    score_motion(stamp, bm)
                else:
                    waiting[stamp] = bm
        elif eid == "target_pose":
            target = TargetPose.from_arrow(event["value"])
            ending.on_target()
        elif eid == "command":
            cmd = Command.from_arrow(event["value"])
            phase = cmd.phase
            t = stamp * 1e-9
            log.force_t.append(t)
            log.force_n.append(cmd.force_measured_n)
            log.phases.append(cmd.phase)
            if cmd.force_target_n > 0:
                log.force_target_n = cmd.force_target_n
            if log.first_contact_s is None and cmd.force_measured_n > 1.0:
                log.first_contact_s = t - first_ns * 1e-9
                log.first_contact_t = t
        elif eid == "ground_truth":
            truth = GroundTruth.from_arrow(event["value"])
            log.max_force_n = max(log.max_force_n, truth.max_contact_force_n)
            log.truth_t.append(stamp * 1e-9)
            log.truth_peak_n.append(truth.max_contact_force_n)
            points = np.asarray(truth.acupoint_positions).reshape(-1, 3)
            truths[stamp] = (quat_to_matrix(np.asarray(truth.body_quaternion)),
                             dict(zip(truth.acupoint_codes, points, strict=True)))
            while len(truths) > 900:  # a minute of frames at 15 Hz
                truths.pop(next(iter(truths)))
            if stamp in waiting:
                score_motion(stamp, waiting.pop(stamp))
            while len(waiting) > 100:
                waiting.pop(next(iter(waiting)))
            if target is not None and target.code in truth.acupoint_codes:
                k = truth.acupoint_codes.index(target.code)
                acu = np.asarray(truth.acupoint_positions).reshape(-1, 3)[k]
                nrm = np.asarray(truth.acupoint_normals).reshape(-1, 3)[k]
                if math.isnan(log.normal_error_deg):
                    log.normal_error_deg = angle_between_deg(np.asarray(target.normal), nrm)
                contact = np.asarray(truth.contact_point)
                if phase == "press" and np.all(np.isfinite(contact)):
                    log.contact_errors_mm.append(float(np.linalg.norm(contact - acu) * 1000))
                in_contact = np.linalg.norm(truth.contact_force) > 1.0
                if phase == "stroke" and in_contact and np.all(np.isfinite(contact)):
                    ref = truths.get(target.source_stamp_ns)
                    path = np.asarray(target.path).reshape(-1, 3)
                    if ref is not None and target.code in ref[1]:
                        path = moved_path(path, ref[0], ref[1][target.code],
                                          truths[stamp][0], acu)
                    log.stroke_mm.append(distance_to_path(contact, path) * 1000)
                if phase in ("press", "stroke") and in_contact and np.all(np.isfinite(contact)):
                    log.follow_t.append(stamp * 1e-9)
                    log.follow_mm.append(float(np.linalg.norm(contact - acu) * 1000))
        if summary is None and (problem := ending.due(last_ns, phase)) is not None:
            if problem:
                log.errors.append(problem)
            finish(stamp)
    if summary is None:
        log.errors.append("the session ended before it was done")
        finish(last_ns)
    sys.exit(exit_code(summary["ok"], log.faults))


if __name__ == "__main__":
    main()
