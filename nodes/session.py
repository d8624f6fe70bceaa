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
    CLICKED,
    DRAWN,
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
                  "events_tracker", "events_pose_fit", "events_planner", "events_control",
                  "events_console")


def _fmt(value) -> str:
    if isinstance(value, float):
        return "- (not measured)" if not math.isfinite(value) else f"{value:.2f}"
    return str(value)


def step_summary(watch: SessionWatch, limits: SessionLimits) -> dict:
    """The running step scored: a drawn stroke on its path, an acupoint on the acupoint."""
    target = watch.target
    summary = summarize(watch.log, watch.duration_s, limits,
                        drawn=target is not None and target.code in (DRAWN, CLICKED))
    summary["target"] = target.code if target is not None else ""  # the point-side pressed
    summary["instruction"] = watch.step.get("text", "")
    summary["step"] = len(watch.steps) + 1
    return summary


def session_summary(steps: list[dict], name: str) -> dict:
    """One step: its summary as the session's. Several: each step's row under ``steps``,
    ok only when every step was, the problems named by step."""
    if len(steps) == 1:
        return {**steps[0], "session": name, "steps": steps}
    problems = [f"step {s['step']}: {p}" for s in steps for p in s["problems"]]
    faults = sorted({f for s in steps for f in s["faults"]})
    return {"session": name, "ok": all(s["ok"] for s in steps), "problems": problems,
            "faults": faults, "duration_s": sum(s["duration_s"] for s in steps),
            "steps": steps}


def finish(watch: SessionWatch, limits: SessionLimits, name: str, folder: Path, out: Outputs,
           stamp: int) -> dict:
    """Score the last step and the session, write the summary (atomically), say done and
    print it."""
    steps = watch.steps + [step_summary(watch, limits)]
    summary = session_summary(steps, name)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "summary.json.tmp"
    tmp.write_text(jsontext.dumps(summary, indent=2))
    tmp.replace(folder / "summary.json")
    out.send("events", SessionEvent("done", "ok" if summary["ok"] else "failed").to_arrow(),
             stamp, "-")
    print("session summary", flush=True)
    for key, value in summary.items():
        if key not in ("steps", "step", "instruction"):  # the console said what was asked
            print(f"  {key:20s} {_fmt(value)}", flush=True)
    if len(steps) > 1:
        for s in steps:
            print(f"  step {s['step']}: {'ok' if s['ok'] else 'FAILED'} {s['instruction']!r} "
                  f"target {s['target'] or '-'}, force RMS error "
                  f"{_fmt(s['force_rms_error_n'])} N, acupoint {_fmt(s['acupoint_error_mm'])} "
                  f"mm, stroke path {_fmt(s['stroke_tracking_mm'])} mm", flush=True)
    print(f"  written to {(folder / 'summary.json').resolve()}", flush=True)
    return summary


def session_limits(cfg: dict) -> SessionLimits:
    """The session's bounds from its env keys (by name: the dataclass's order is not the
    env's)."""
    return SessionLimits(max_acupoint_error_mm=cfg["MAX_ACUPOINT_ERROR_MM"],
                         max_normal_error_deg=cfg["MAX_NORMAL_ERROR_DEG"],
                         max_force_rms_error_n=cfg["MAX_FORCE_RMS_ERROR_N"],
                         force_cap_n=cfg["FORCE_CAP_N"])


def main() -> None:
    """Watch until done, then write the summary."""
    cfg = configure("session", PARAMS)
    from dora import Node

    limits = session_limits(cfg)
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
        if watch.step_complete and summary is None:
            done = step_summary(watch, limits)
            watch.next_step(done)
            out.send("events", SessionEvent("step_done", jsontext.dumps(done)).to_arrow(),
                     stamp, "-")
            print(f"session: step {done['step']} {'ok' if done['ok'] else 'failed'}: "
                  f"{done['instruction']!r}" + (f" ({'; '.join(done['problems'])})"
                                                if done["problems"] else ""), flush=True)
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
