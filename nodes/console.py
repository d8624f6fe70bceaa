"""console: the person at the rig. Gives the session its steps and, with SERVE, serves the
page to instruct, draw, adjust, watch and stop it.

Inputs: ``camera_info`` (the clock: the first step goes out AT_S of camera time), ``rgb``
(the page's image), ``command`` (phase, force against target), ``robot_state`` (the tool on
the image), ``targets``, ``target_pose`` and ``trajectory`` (the grounded box, the target
with its normal and the planned path on the image), ``body_motion`` (the tracker's status),
and any input whose name starts with ``events`` (the session's ``step_done`` and ``done``;
every node's errors, shown).
Outputs: ``instruction`` (one per step, again on a resume), ``events`` (``step`` as each
goes out: whether it is the last; ``finish``; ``pause`` when the person pauses the step or,
with DEADMAN, every page closed mid-step: the controller backs the tool off the body and
holds; ``resume``; an error when the person stops the step: the robot releases contact and
the session ends), ``estop`` (the page's e-stop button and key), ``force_target`` (the
pressure slider, N, live during contact).

Steps: INSTRUCTION (one step) and/or a ROUTINE file run in order, then, with SERVE, what the
person asks for until they end the session. A bad step is refused with one line before
anything moves.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from typing import Any

import numpy as np
import pyarrow as pa
from tuina.operators.console import (
    PageState,
    RoutineError,
    Step,
    StepQueue,
    clamp_force,
    is_loopback,
    load_routine,
    step_event_detail,
)
from tuina.operators.instructions import UnknownAcupoint

from tuina.estop import estop_message
from tuina.messages import (
    CAMERA_FRAME,
    BodyMotion,
    CameraInfo,
    Command,
    Instruction,
    RobotState,
    SessionEvent,
    TargetPose,
    Trajectory,
    decode_rgb,
    decode_targets,
)
from tuina.runtime import Outputs, configure, fail, stamp_of
from tuina.runtime.loop import GONE, supervised_events
from tuina.settings.console import PARAMS

POLL_S = 0.01  # how often the page's requests are read: the e-stop's wait at most
NORMAL_M = 0.04  # the target's normal is drawn this long on the image
SHOW_S = 0.1  # how often the pages' state is refreshed


def first_steps(cfg: dict[str, Any]) -> list[Step]:
    """INSTRUCTION, then the ROUTINE's steps; the node fails with one line on a bad one."""
    steps = []
    try:
        if cfg["INSTRUCTION"] or cfg["STROKE_PX"]:
            step = Step(cfg["INSTRUCTION"], tuple(cfg["STROKE_PX"]))
            step.check()
            steps.append(step)
        if cfg["ROUTINE"]:
            steps += load_routine(cfg["ROUTINE"])
    except RoutineError as err:
        fail("console", str(err))
    except (UnknownAcupoint, ValueError) as err:
        fail("console", f"INSTRUCTION / STROKE_PX: {err}")
    if not steps and not cfg["SERVE"]:
        fail("console", "nothing to do: set INSTRUCTION or ROUTINE, or SERVE: true for a "
             "person at the page")
    return steps


def click_ns(clicked_ms: Any) -> int | None:
    """The wall-clock time of a click on the page (its own clock, ms) when it is plausible
    here (the page on this machine, or clocks within a second): else None, now counts."""
    try:
        ns = int(float(clicked_ms) * 1e6)
    except (TypeError, ValueError):
        return None
    return ns if abs(time.time_ns() - ns) < 1e9 else None


def project(info: CameraInfo, points: np.ndarray) -> list[list[float]]:
    """Base-frame points -> image pixels (those in front of the camera)."""
    camera_T_base = np.linalg.inv(np.asarray(info.base_T_camera, float).reshape(4, 4))
    p = points.reshape(-1, 3) @ camera_T_base[:3, :3].T + camera_T_base[:3, 3]
    p = p[p[:, 2] > 0.05]
    return np.round(np.column_stack([info.fx * p[:, 0] / p[:, 2] + info.cx,
                                     info.fy * p[:, 1] / p[:, 2] + info.cy]), 1).tolist()


class Console:
    """The node's state between events: the steps, what the page is shown, the outputs."""

    def __init__(self, cfg: dict[str, Any], out: Outputs, server: Any) -> None:
        self.cfg, self.out, self.server = cfg, out, server
        self.queue = StepQueue(first_steps(cfg), int(cfg["AT_S"] * 1e9), cfg["SERVE"])
        self.page = PageState()
        self.info: CameraInfo | None = None
        self.stamp = 0
        self.t0: int | None = None
        self.stopped_step = False  # the stop button ended the running step
        # camera frames a page could see: how many, the wall times of the first and last
        self.frames_in, self.first_frame_s, self.last_frame_s = 0, 0.0, 0.0

    def tell(self, line: str, kind: str = "info") -> None:
        """A line on every page; a refused request on the terminal as well."""
        self.page.events.append({"t": round(self.elapsed, 2), "kind": kind, "text": line})
        if kind == "refused":
            print(f"console: {line}", flush=True)

    @property
    def elapsed(self) -> float:
        return 0.0 if self.t0 is None else (self.stamp - self.t0) * 1e-9

    def send_event(self, kind: str, detail: str, fault: str = "") -> None:
        self.out.send("events", SessionEvent(kind, detail, fault).to_arrow(), self.stamp,
                      CAMERA_FRAME)

    def on_input(self, eid: str, event: dict[str, Any]) -> None:
        value, page = event["value"], self.page
        if "stamp_ns" not in event["metadata"]:  # a timer: nothing to show, no event time
            return
        self.stamp = max(self.stamp, stamp_of(event))
        self.t0 = self.stamp if self.t0 is None else self.t0
        if eid == "camera_info":
            self.info = CameraInfo.from_arrow(value)
        elif self.server is None and not eid.startswith("events"):
            return  # no page to show it on: the graph's other streams are not decoded
        elif eid == "rgb" and self.server is not None and self.server.pages:
            self.last_frame_s = time.monotonic()
            self.first_frame_s = self.first_frame_s or self.last_frame_s
            self.frames_in += 1
            self.server.show_frame(np.array(decode_rgb(value, event["metadata"])))
        elif eid == "command":
            cmd = Command.from_arrow(value)
            page.phase = cmd.phase
            page.force_t.append(self.elapsed)
            page.force_n.append(cmd.force_measured_n)
            page.force_target.append(cmd.force_target_n)
        elif eid == "robot_state" and self.info is not None:
            state = RobotState.from_arrow(value)
            page.tool_px = project(self.info, np.asarray(state.tool_position))
            page.robot = state.status
        elif eid == "targets":
            for target in decode_targets(value):
                page.target = {"code": target.code, "name": target.name,
                               "box": list(target.box), "center": list(target.center_px),
                               "stroke": list(target.stroke_px)}
        elif eid == "target_pose" and self.info is not None:
            pose = TargetPose.from_arrow(value)
            point = np.asarray(pose.position, float)
            ends = project(self.info, np.vstack([point, point + NORMAL_M *
                                                 np.asarray(pose.normal, float)]))
            page.normal_px = ends if len(ends) == 2 else []
        elif eid == "trajectory":
            traj = Trajectory.from_arrow(value)
            if page.pressure_n is not None and self.queue.running is not None:
                # a new plan within the step (the body found again) keeps the person's force
                self.out.send("force_target", pa.array([page.pressure_n]), self.stamp,
                              CAMERA_FRAME)
            if self.info is not None:
                positions = np.asarray(traj.positions).reshape(-1, 3)
                page.plan_px = project(self.info, positions[:: max(1, len(positions) // 150)])
        elif eid == "body_motion":
            page.tracker = BodyMotion.from_arrow(value).status
        elif eid.startswith("events"):
            self.on_event(SessionEvent.from_arrow(value), from_session=eid == "events")

    def on_event(self, ev: SessionEvent, from_session: bool) -> None:
        if ev.kind == "step_done":
            summary = json.loads(ev.detail)
            self.page.steps.append(summary)
            self.tell(f"step {len(self.page.steps)} {'ok' if summary.get('ok') else 'failed'}"
                      f": {summary.get('instruction', '')}", "step")
            self.queue.step_done()
            self.page.pressure_n, self.page.paused = None, False
            if self.queue.finished:
                self.send_event("finish", "the person ended the session")
        elif ev.kind == "done" and from_session:  # the controller's done ends a step only
            self.page.ended = True
            self.tell(f"session {ev.detail}", "done")
        elif ev.kind in ("error", "abort"):
            self.tell(ev.detail, ev.kind)
        elif ev.kind in ("phase", "released"):
            self.tell(f"{ev.kind} {ev.detail}", ev.kind)
        elif ev.kind == "paused":
            self.tell(ev.detail, "pause")

    def send_due_step(self) -> None:
        step = self.queue.due(self.stamp)
        if step is None:
            return
        self.send_event("step", step_event_detail(self.queue.sent, step, self.queue.last))
        self.out.send("instruction", Instruction(step.text, list(step.stroke_px)).to_arrow(),
                      self.stamp, CAMERA_FRAME)
        self.page.target, self.page.plan_px, self.page.normal_px = {}, [], []
        print(f"console: step {self.queue.sent}: {step.text!r}"
              + (f" along a drawn stroke of {len(step.stroke_px) // 2} points"
                 if step.stroke_px else ""), flush=True)
        self.tell(f"step {self.queue.sent}: {step.text}", "step")

    def on_request(self, request: dict[str, Any]) -> None:
        """What a page asked for; a bad request is answered on the page, nothing moves."""
        kind = request["type"]
        if kind == "estop":
            value, metadata = estop_message("the page's e-stop", "console",
                                            self.out.seq.get("estop", 0),
                                            click_ns(request.get("clicked_ms")))
            self.out.seq["estop"] = self.out.seq.get("estop", 0) + 1
            self.out.node.send_output("estop", value, metadata)
            self.page.estopped = True
            self.tell("e-stop sent", "error")
            print("console: e-stop pressed on the page", flush=True)
        elif kind == "step":
            step = Step(str(request.get("text", "")),
                        tuple(float(v) for v in request.get("stroke_px", [])))
            try:
                step.check()
            except (UnknownAcupoint, ValueError) as err:
                self.tell(f"not sent: {err}", "refused")
                return
            if self.queue.finished or self.page.ended:
                self.tell("not sent: the session is over", "refused")
                return
            self.queue.add(step)
            self.tell(f"queued: {step.text}", "info")
        elif kind == "pressure":
            try:
                force = clamp_force(float(request.get("force_n", "nan")),
                                    self.cfg["MIN_FORCE_N"], self.cfg["FORCE_CAP_N"])
            except (TypeError, ValueError) as err:
                self.tell(f"not sent: {err}", "refused")
                return
            self.page.pressure_n = force
            self.out.send("force_target", pa.array([force]), self.stamp, CAMERA_FRAME)
            self.tell(f"force target {force:.1f} N", "info")
        elif kind == "stop":
            self.stop_step("the person stopped the step on the console", "stop")
        elif kind == "pause":
            self.pause_step("the person paused the step")
        elif kind == "resume":
            self.resume_step()
        elif kind == "end":
            if self.page.paused:  # nothing will finish the paused step: it ends stopped
                self.stop_step("the person ended the session while the step was paused",
                               "stop")
            elif self.queue.finish():
                self.send_event("finish", "the person ended the session")
            self.tell("ending the session after the running step", "info")

    def stop_step(self, why: str, fault: str) -> None:
        """The running step ends now: an error the robot releases contact on."""
        if self.queue.running is None or self.stopped_step:
            return
        self.stopped_step = True
        self.queue.finish()
        self.send_event("error", f"console: {why}", fault)
        print(f"tuina-console: error: {why}", file=sys.stderr, flush=True)
        self.tell(why, "error")

    def pause_step(self, why: str) -> None:
        """The running step pauses: the controller backs the tool off the body and holds it
        there; nothing the graph plans meanwhile is followed."""
        if self.queue.running is None or self.stopped_step:
            self.tell("not paused: no step is running", "refused")
            return
        if self.page.paused:
            self.tell("not paused: the step is paused already", "refused")
            return
        self.page.paused = True
        self.send_event("pause", why)
        print(f"console: paused: {why}", flush=True)
        self.tell(f"paused: {why}; the arm holds off the body", "pause")

    def resume_step(self) -> None:
        """The paused step is sent again: grounded on a new frame (the body may have moved),
        planned from where the arm holds, pressed anew."""
        step = self.queue.running
        if step is None or not self.page.paused:
            self.tell("not resumed: no step is paused", "refused")
            return
        self.page.paused = False
        self.send_event("resume", "the person resumed the step")
        self.out.send("instruction", Instruction(step.text, list(step.stroke_px)).to_arrow(),
                      self.stamp, CAMERA_FRAME)
        self.page.target, self.page.plan_px, self.page.normal_px = {}, [], []
        print(f"console: resumed step {self.queue.sent}: {step.text!r}", flush=True)
        self.tell(f"resumed: {step.text}", "step")

    def dead_man(self) -> None:
        """Every page closed in the middle of a step: the step pauses, contact released (a
        page that opens again can resume it)."""
        server = self.server
        if (server is None or not self.cfg["DEADMAN"] or self.queue.running is None
                or self.page.paused or not server.ever_connected or server.pages):
            return
        if time.monotonic() - server.last_seen > self.cfg["DEADMAN_S"]:
            self.pause_step(f"every console page closed mid-step for "
                            f"{self.cfg['DEADMAN_S']:g} s (dead-man)")


def serve(cfg: dict[str, Any]) -> Any:
    """The page's server, or None without SERVE; a token made when off loopback."""
    if not cfg["SERVE"]:
        return None
    from tuina.console_server import ConsoleServer

    token = cfg["TOKEN"]
    if not is_loopback(cfg["BIND"]) and not token:
        token = secrets.token_urlsafe(18)
    server = ConsoleServer(cfg["BIND"], cfg["PORT"], "" if is_loopback(cfg["BIND"]) and
                           not cfg["TOKEN"] else token, cfg["IMAGE_HZ"])
    try:
        server.start()
    except OSError as err:
        fail("console", f"cannot serve the page on {cfg['BIND']}:{cfg['PORT']} ({err}); set "
             "PORT to a free port or BIND to an address of this machine")
    query = f"/?token={server.token}" if server.token else "/"
    note = "" if not server.token else " (off loopback: the token is required)"
    print(f"console: open http://{cfg['BIND']}:{cfg['PORT']}{query}{note}", flush=True)
    return server


def main() -> None:
    """Send the steps, serve the page, until the session is done."""
    cfg = configure("console", PARAMS)
    if len(cfg["STROKE_PX"]) % 2:
        fail("console", "STROKE_PX needs pairs of pixel coordinates u,v")
    os.nice(cfg["NICE"])  # lowering one's own priority needs no permission
    from dora import Node

    server = serve(cfg)
    node = Node()
    out = Outputs(node)
    console = Console(cfg, out, server)
    shown_at = 0.0
    try:
        for event in supervised_events(node, POLL_S):
            kind, eid = event["type"], event.get("id", "")
            if kind in ("STOP", GONE):  # after the robot: its inputs here close last
                break
            if kind == "INPUT" and eid != "tick":
                out.lineage.note(event)
                console.on_input(eid, event)
            if server is not None:
                while not server.requests.empty():
                    console.on_request(server.requests.get_nowait())
                console.dead_man()
                if time.monotonic() >= shown_at + SHOW_S:
                    shown_at = time.monotonic()
                    server.show_state(console.page.snapshot())
            if console.info is not None:
                console.send_due_step()
    finally:
        if server is not None:
            server.stop()
            if console.frames_in > 1:  # in the node's log: what the camera gave the page
                rate = (console.frames_in - 1) / (console.last_frame_s - console.first_frame_s)
                print(f"console: camera {console.frames_in} frames at {rate:.1f} Hz while a "
                      "page was open", flush=True)


if __name__ == "__main__":
    main()
