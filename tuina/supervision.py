"""What both robot nodes (FR3, Baxter) share around the safety supervisor: its env keys,
the supervisor they describe, the one line each report becomes, and the graph's events
turned into supervisor calls."""

from __future__ import annotations

from typing import Any

import numpy as np

from tuina.config import Param
from tuina.estop import press_age_ms
from tuina.messages import BASE_FRAME, Command, SessionEvent
from tuina.operators.safety import SafetyConfig
from tuina.operators.supervisor import Reference, Report, Supervisor, SupervisorConfig
from tuina.runtime import GONE, stamp_of

SUPERVISOR_PARAMS = [
    Param("FORCE_CAP_N", "float", 15.0, "N", "hard contact force cap: over it the arm releases "
          "contact", low=1.0, high=40.0),
    Param("WATCHDOG_S", "float", 0.1, "s", "no command for this long (robot time) while "
          "following: release contact", low=0.01),
    Param("MAX_COMMAND_AGE_S", "float", 0.02, "s", "a command computed from a robot state "
          "older than this (robot time; two state periods) is a fault", low=0.005),
    Param("RELEASE_M", "float", 0.03, "m", "furthest a release moves the tool away from the "
          "body", low=0.005, high=0.1),
    Param("RELEASE_SPEED", "float", 0.04, "m/s", "speed of that release", low=0.005,
          high=0.2),
    Param("ESCAPE_SPEED", "float", 0.25, "m/s", "release speed while the body pushes into the "
          "tool at FORCE_CAP_N (from RELEASE_SPEED at half the cap): a flinching body is "
          "escaped at its own pace", low=0.005, high=1.0),
    Param("RELEASE_FORCE_N", "float", 1.0, "N", "a measured force (its mean over 5 states) "
          "below this is out of contact: the release holds there, a session may end. Above the "
          "arm's estimate's noise and drift since the start tare (an FR3's: 0.3-0.5 N over a "
          "minute; a Baxter's more: its graphs set 2)", low=0.05, high=5.0),
    Param("TARE_S", "float", 0.5, "s", "the force reading's zero: its mean over this long "
          "while the arm stands still at start, before any command (0: no tare)", low=0.0,
          high=5.0),
    Param("TARE_MAX_N", "float", 10.0, "N", "a zero larger than this is a contact, not the "
          "sensor's bias: not taken, a fault (released, held)", low=1.0, high=30.0),
    Param("MAX_TURN_DEG", "float", 8.0, "deg", "the tool turned this far from its commanded "
          "orientation for POSE_ERROR_S, in contact or with the reference still: the arm does "
          "not reach the pose (a joint at its limit); release contact. 1.8-2.8 deg on a good "
          "press, up to 5.4 before contact following a moving body", low=1.0, high=30.0),
    Param("POSE_ERROR_S", "float", 0.3, "s", "how long the tool may stay turned off its pose",
          low=0.0, high=5.0),
    Param("CLOSE_TIMEOUT_S", "float", 5.0, "s", "after the graph ends, the longest the node "
          "goes on releasing before it stops the arm where it is", low=0.5),
]


def supervisor_config(cfg: dict[str, Any], max_speed: float = 0.15,
                      lead_s: float = 0.0, max_lead_m: float = 0.02) -> SupervisorConfig:
    """The supervisor a robot node's validated env (SUPERVISOR_PARAMS and its workspace box)
    describes."""
    safety = SafetyConfig(tuple(cfg["WORKSPACE_MIN"]), tuple(cfg["WORKSPACE_MAX"]),
                          cfg["FORCE_CAP_N"], max_speed, 0.05, cfg["WATCHDOG_S"])
    return SupervisorConfig(safety, cfg["MAX_COMMAND_AGE_S"], cfg["RELEASE_M"],
                            cfg["RELEASE_SPEED"], cfg["ESCAPE_SPEED"],
                            contact_n=cfg["RELEASE_FORCE_N"], tare_s=cfg["TARE_S"],
                            tare_max_n=cfg["TARE_MAX_N"],
                            reference_lead_s=lead_s, max_lead_m=max_lead_m,
                            max_turn_deg=cfg["MAX_TURN_DEG"],
                            pose_error_s=cfg["POSE_ERROR_S"])


def fault_line(report: Report) -> str:
    """The one line a robot node prints and sends for a supervisor report."""
    if report.kind == "released":
        return f"released contact: {report.detail}"
    return f"{report.detail} [{report.fault}]; releasing contact, then holding"


SESSION_INPUT = "events"  # the session's events: its done, or its end, ends the robot node


class SupervisedNode:
    """The node side of the supervisor both robot nodes share: the graph's own events (its
    end, a closed ``command`` input, the e-stop, every node's ``events``) become supervisor
    calls, commands are decoded and checked, each report goes out as one line and one event,
    and the loop is told when it may end."""

    def __init__(self, supervisor: Supervisor, out: Any, name: str, close_timeout_s: float):
        self.supervisor = supervisor
        self.out = out
        self.name = name  # the node's name in its lines: franka | baxter
        self.close_timeout_s = close_timeout_s
        self.closing_since: float | None = None  # wall time the graph began to end
        self.stamp = 0  # robot time (ns) of the latest state: events are stamped with it

    def report(self, line: str, kind: str = "error", fault: str = "") -> None:
        """One line on the terminal and one event."""
        print(f"tuina-{self.name}: {line}", flush=True)
        self.out.send("events", SessionEvent(kind, f"{self.name}: {line}", fault).to_arrow(),
                      self.stamp, BASE_FRAME)

    def flush(self) -> None:
        """Send what the supervisor has to say since the last call."""
        for item in self.supervisor.take_reports():
            self.report(fault_line(item), item.kind, item.fault)

    def lost(self, detail: str) -> None:
        """The link to the arm is gone: the fault, said at once (the node stops)."""
        self.supervisor.on_fault("link_lost", detail)
        self.flush()

    def handle(self, event: dict[str, Any], now: float) -> bool:
        """Take one of the graph's events (True), or leave it to the node (False): ticks
        and commands."""
        sup, kind, eid = self.supervisor, event["type"], event.get("id", "")
        if kind in ("STOP", GONE) or (kind == "INPUT_CLOSED" and eid == SESSION_INPUT):
            self.closing_since = self.closing_since or now
            sup.on_done()
        elif kind == "INPUT_CLOSED":
            if sup.done:
                pass  # the graph is ending: its nodes go
            elif eid == "command":
                sup.on_fault("command_closed", "the command stream closed (the force "
                             "controller is gone)")
            elif not eid.startswith("estop"):  # the button's node comes and goes
                sup.on_fault("node_gone", f"input {eid} closed: its node is gone")
        elif eid.startswith("estop"):
            meta = event.get("metadata", {})
            reason = f": {meta['reason']}" if meta.get("reason") else ""
            age = press_age_ms(meta)
            pressed = f" (pressed {age:.0f} ms before)" if age is not None else ""
            sup.on_fault("estop", f"e-stop from {meta.get('source', eid)}{reason}{pressed}")
        elif eid.startswith("events"):
            ev = SessionEvent.from_arrow(event["value"])
            if ev.kind == "done" and eid == SESSION_INPUT:  # a step's done ends nothing
                self.closing_since = self.closing_since or now
                sup.on_done()
            elif ev.kind == "error":
                sup.on_fault("error_event", ev.detail)
        else:
            return False
        self.flush()
        return True

    def command(self, event: dict[str, Any],
                check: Any = None) -> tuple[Command, Reference] | None:
        """A command event checked (by ``check(command)``, the robot's own problem with it
        or "", then by the supervisor): the command and the reference to send, or None when
        it is not followed (a malformed or bad one is a fault)."""
        try:
            cmd = Command.from_arrow(event["value"])
            problem = check(cmd) if check is not None and not self.supervisor.latched else ""
        except ValueError as err:
            problem = f"malformed command: {err}"
        if problem:
            self.supervisor.on_fault("bad_command", problem)
            self.flush()
            return None
        ref = self.supervisor.on_command(
            self.stamp * 1e-9, stamp_of(event) * 1e-9, np.asarray(cmd.position),
            np.asarray(cmd.quaternion), np.asarray(cmd.twist), cmd.mode,
            np.asarray(cmd.normal) if cmd.normal else None)
        self.flush()
        return None if ref is None else (cmd, ref)

    def done(self, now: float) -> bool:
        """The loop may end: the graph is ending and the tool is clear, or it has been
        ending for CLOSE_TIMEOUT_S (said in one line)."""
        if self.closing_since is None:
            return False
        if self.supervisor.finished:
            return True
        if now - self.closing_since > self.close_timeout_s:
            self.report(f"still in contact {self.close_timeout_s} s after the graph ended; "
                        "stopping the arm where it is (use the hardware e-stop)")
            return True
        return False
