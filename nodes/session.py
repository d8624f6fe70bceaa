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

import math
import sys
from datetime import datetime
from pathlib import Path

from tuina.operators.session import (
    SessionEnding,
    SessionLimits,
    SessionWatch,
    exit_code,
    summarize,
)

from tuina import jsontext
from tuina.messages import BodyMotion, Command, GroundTruth, SessionEvent, TargetPose
from tuina.runtime import Outputs, configure, events, stamp_of
from tuina.settings.session import PARAMS

# inputs whose closing does not end the session: any node but the world and the robot may
# die mid-session, and the session must still see the robot release contact
LASTING_INPUTS = ("command", "target_pose", "body_motion", "events_grounding",
                  "events_tracker", "events_pose_fit", "events_planner", "events_control")


def _fmt(value) -> str:
    if isinstance(value, float):
        return "- (not measured)" if not math.isfinite(value) else f"{value:.2f}"
    return str(value)


def finish(watch: SessionWatch, limits: SessionLimits, name: str, folder: Path, out: Outputs,
           stamp: int) -> dict:
    """Score the session, write its summary (atomically), say done and print it."""
    summary = summarize(watch.log, watch.duration_s, limits)
    summary["session"] = name
    target = watch.target
    summary["target"] = target.code if target is not None else ""  # the point-side pressed
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "summary.json.tmp"
    tmp.write_text(jsontext.dumps(summary, indent=2))
    tmp.replace(folder / "summary.json")
    out.send("events", SessionEvent("done", "ok" if summary["ok"] else "failed").to_arrow(),
             stamp, "-")
    print("session summary", flush=True)
    for key, value in summary.items():
        print(f"  {key:20s} {_fmt(value)}", flush=True)
    print(f"  written to {(folder / 'summary.json').resolve()}", flush=True)
    return summary


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
    watch = SessionWatch(SessionEnding(cfg["RELEASE_WAIT_S"], cfg["REPLAN_WAIT_S"],
                                       cfg["TIMEOUT_S"]))
    summary: dict | None = None
    for event in events(node, timers=LASTING_INPUTS, lineage=out.lineage):
        stamp = stamp_of(event)
        watch.heard(stamp)
        eid, value = event["id"], event.get("value")
        if eid.startswith("events"):
            if line := watch.on_event(SessionEvent.from_arrow(value), stamp):
                print(f"session: {line}", flush=True)
        elif eid == "body_motion":
            watch.on_body_motion(BodyMotion.from_arrow(value), stamp)
        elif eid == "target_pose":
            watch.on_target(TargetPose.from_arrow(value))
        elif eid == "command":
            watch.on_command(Command.from_arrow(value), stamp)
        elif eid == "ground_truth":
            watch.on_truth(GroundTruth.from_arrow(value), stamp)
        if summary is None and (problem := watch.due()) is not None:
            if problem:
                watch.log.errors.append(problem)
            summary = finish(watch, limits, name, folder, out, stamp)
    if summary is None:
        watch.log.errors.append("the session ended before it was done")
        summary = finish(watch, limits, name, folder, out, watch.last_ns)
    sys.exit(exit_code(summary["ok"], watch.log.faults))


if __name__ == "__main__":
    main()
