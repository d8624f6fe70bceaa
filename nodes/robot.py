"""robot: a Franka FR3 through franky (the same node drives franky-sim in simulation).

Inputs: ``command`` (tool reference), ``estop`` and any other input whose name starts with
``estop`` (the operator's ``tuina estop`` button or any node's output), any input whose name
starts with ``events`` (wire every node's events here: an error from any node is a fault;
the session's ``done`` ends the node once the tool is out of contact).
Outputs: ``robot_state`` at STATE_RATE_HZ on the node's own schedule, stamped with the
robot's own clock; ``events`` (one error per fault, naming it, and ``released``).

This node is the last line of defence (operators.supervisor): on any fault (an error event,
``done`` or the end of the graph while in contact, a closed ``command`` input, no command
for WATCHDOG_S, a stale, malformed or out-of-workspace command, a non-finite or zero-in-
contact wrench, a force over FORCE_CAP_N, the e-stop, a lost link) it latches, releases
contact (against the measured force, along the last surface normal, or straight up, at
RELEASE_SPEED for at most RELEASE_M), then holds and keeps watching the force, alone if
every other node is gone. The arm's own reflex is set from FORCE_CAP_N too.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from tuina.operators.geometry import quat_to_matrix
from tuina.operators.supervisor import Reference, Supervisor
from tuina.operators.timing import LoopTimer

from tuina.config import Param
from tuina.messages import BASE_FRAME, Command, RobotState, SessionEvent
from tuina.node import (
    GONE,
    PRIORITY_PARAMS,
    Outputs,
    configure,
    fail,
    raise_priority,
    stamp_of,
    supervised_events,
)
from tuina.supervision import SUPERVISOR_PARAMS, fault_line, supervisor_config

PARAMS = [
    Param("FRANKA_IP", "str", "172.16.0.2", "-", "robot (or franky-sim) address"),
    Param("CONNECT_TIMEOUT_S", "float", 2.0, "s", "give up connecting after this", low=0.1),
    Param("TOOL_LENGTH_M", "float", 0.0466, "m",
          "massage-ball contact point past franky's end-effector frame", low=0.0),
    Param("STIFFNESS_N_PER_M", "float", 1500.0, "N/m", "Cartesian impedance, translation",
          low=50, high=3000),
    Param("ROT_STIFFNESS_NM_PER_RAD", "float", 60.0, "N m/rad", "Cartesian impedance, rotation",
          low=5, high=300),
    *SUPERVISOR_PARAMS,
    Param("REFLEX_MARGIN", "float", 1.2, "-", "the arm's own 1 kHz collision reflex stops it "
          "at FORCE_CAP_N times this (franky set_collision_behavior; above the cap, so the "
          "release acts first)", low=1.0, high=3.0),
    Param("WORKSPACE_MIN", "floats", [0.15, -0.75, 0.0], "m", "workspace box (base)",
          length=3),
    Param("WORKSPACE_MAX", "floats", [0.85, 0.75, 0.8], "m", "workspace box (base)",
          length=3),
    Param("MAX_SPEED", "float", 0.15, "m/s", "reference speed limit", low=0.001, high=1.0),
    Param("CONNECTION_TIMEOUT_S", "float", 0.5, "s",
          "the robot's clock standing still this long (wall time) means the connection is lost",
          low=0.05),
    Param("REFERENCE_LEAD_S", "float", 0.12, "s",
          "a moving reference is set this far ahead along its feed-forward velocity: the "
          "impedance's lag behind a ramp (0.074 s at 2500 N/m, 0.35 s at 800 N/m in "
          "franky-sim; 0: off)", low=0, high=0.5),
    Param("STATE_RATE_HZ", "float", 100.0, "Hz", "robot states published on this node's own "
          "absolute schedule (steadier than a dora timer, whose ticks pass through the "
          "daemon)", low=1, high=1000),
    Param("REALTIME", "bool", False, "-", "enforce a realtime kernel (real robots: true)"),
    *PRIORITY_PARAMS,
]


MAX_LEAD_M = 0.02  # the reference never runs further ahead of the commanded position
TORQUE_PER_N = 1.0  # m: joint torque thresholds of the reflex, from the force cap (reach)


def connect(ip: str, timeout_s: float, realtime: bool):
    """franky.Robot connected within the timeout, retrying while the server comes up."""
    import franky

    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    config = franky.RealtimeConfig.Enforce if realtime else franky.RealtimeConfig.Ignore
    while time.monotonic() < deadline:
        box: dict = {}

        def attempt(box: dict = box) -> None:
            try:
                box["robot"] = franky.Robot(ip, realtime_config=config)
            except Exception as err:  # libfranka raises several unrelated types
                box["error"] = err

        worker = threading.Thread(target=attempt, daemon=True)
        worker.start()
        worker.join(max(deadline - time.monotonic(), 0.0))
        if "robot" in box:
            return box["robot"]
        last_error = box.get("error")
        time.sleep(0.2)
    raise TimeoutError(f"cannot reach the robot at {ip} within {timeout_s:.1f} s"
                       + (f" ({last_error})" if last_error else "")
                       + "; check FRANKA_IP, the network and that FCI is enabled")


def main() -> None:
    """Drive the arm from commands under the safety supervisor; publish its state."""
    cfg = configure("robot", PARAMS)
    raise_priority("robot", cfg["NICE"], cfg["REALTIME_PRIORITY"])
    import franky
    from dora import Node

    supervisor = Supervisor(supervisor_config(cfg, cfg["MAX_SPEED"], cfg["REFERENCE_LEAD_S"],
                                              MAX_LEAD_M))
    node = Node()
    try:
        robot = connect(cfg["FRANKA_IP"], cfg["CONNECT_TIMEOUT_S"], cfg["REALTIME"])
    except TimeoutError as err:
        fail("robot", str(err))
    robot.recover_from_errors()
    # the arm's own 1 kHz reflex: a Cartesian force over the cap stops it (franky-sim
    # acknowledges the setting and does not simulate it)
    cap = cfg["FORCE_CAP_N"] * cfg["REFLEX_MARGIN"]
    robot.set_collision_behavior([cap * TORQUE_PER_N] * 7, [cap] * 3 + [cap * 0.2] * 3)
    tool_offset = np.array([0.0, 0.0, cfg["TOOL_LENGTH_M"]])
    motion = franky.CartesianImpedanceTrackingMotion(
        translational_stiffness=cfg["STIFFNESS_N_PER_M"],
        rotational_stiffness=cfg["ROT_STIFFNESS_NM_PER_RAD"])

    def tool_pose(state) -> tuple[np.ndarray, np.ndarray]:
        ee = state.O_T_EE
        q = np.asarray(ee.quaternion)
        return np.asarray(ee.translation) + quat_to_matrix(q) @ tool_offset, q

    def send(ref: Reference) -> None:
        """The tool-point reference as franky's end-effector reference."""
        offset = quat_to_matrix(ref.quaternion) @ tool_offset
        ee = ref.position - offset
        if ref.twist is None:
            motion.set_reference(franky.CartesianReference(franky.Affine(ee, ref.quaternion)))
            return
        # the end-effector moves with the tool point: v_ee = v_tool + w x (ee - tool)
        linear = ref.twist[:3] + np.cross(ref.twist[3:], -offset)
        motion.set_reference(franky.CartesianReference(
            franky.Affine(ee, ref.quaternion), franky.Twist(linear, ref.twist[3:])))

    state = robot.state
    p0, q0 = tool_pose(state)
    sent = Reference(p0, q0)
    send(sent)
    robot.move(motion, asynchronous=True)
    out = Outputs(node)
    timer = LoopTimer()
    clock = (-1, time.monotonic())  # robot time (ms), wall time when it last advanced
    stamp = 0
    closing_since: float | None = None  # wall time the graph began to end

    def report(line: str, kind: str = "error", fault: str = "") -> None:
        print(f"tuina-robot: {line}", flush=True)
        out.send("events", SessionEvent(kind, f"robot: {line}", fault).to_arrow(), stamp,
                 BASE_FRAME)

    def flush_reports() -> None:
        for item in supervisor.take_reports():
            report(fault_line(item), item.kind, item.fault)

    try:
        for event in supervised_events(node, 1.0 / cfg["STATE_RATE_HZ"]):
            now = time.monotonic()
            kind, eid = event["type"], event.get("id", "")
            if kind in ("STOP", GONE) or (kind == "INPUT_CLOSED" and eid.startswith("events")):
                closing_since = closing_since or now
                supervisor.on_done()
            elif kind == "INPUT_CLOSED" and eid == "command" and not supervisor.done:
                supervisor.on_fault("command_closed", "the command stream closed (the force "
                                    "controller is gone)")
            elif eid == "tick":
                try:
                    state = robot.state
                except Exception as err:  # libfranka's network and control errors
                    supervisor.on_fault("link_lost", f"lost the robot connection ({err})")
                    flush_reports()
                    break
                robot_ms = int(state.time.to_msec())
                if robot_ms != clock[0]:
                    clock = (robot_ms, now)
                elif now - clock[1] > cfg["CONNECTION_TIMEOUT_S"]:
                    supervisor.on_fault("link_lost", "lost the robot connection: its clock "
                                        f"stopped {now - clock[1]:.2f} s ago")
                    flush_reports()
                    break
                if robot.has_errors:
                    supervisor.on_fault("robot_error", f"the robot reports an error "
                                        f"({robot.current_errors})")
                    try:  # a reflex stopped the motion: recover so the release can move
                        robot.recover_from_errors()
                        robot.move(motion, asynchronous=True)
                    except Exception as err:  # libfranka's control errors
                        report(f"cannot recover from the arm's error ({err}); use the "
                               "hardware e-stop", fault="robot_error")
                tool_p, tool_q = tool_pose(state)
                wrench = np.asarray(state.O_F_ext_hat_K, float)
                ref = supervisor.on_state(robot_ms * 1e-3, tool_p, tool_q, wrench)
                if ref is not sent:
                    send(ref)
                    sent = ref
                stamp = robot_ms * 1_000_000
                msg = RobotState(list(state.q), list(state.dq), tool_p.tolist(),
                                 tool_q.tolist(), wrench.tolist(), supervisor.status,
                                 list(state.tau_J))
                out.send("robot_state", msg.to_arrow(), stamp, BASE_FRAME)
                timer.published(stamp, time.perf_counter())
                flush_reports()
                if supervisor.finished and closing_since is not None:
                    break
                if closing_since is not None and now - closing_since > cfg["CLOSE_TIMEOUT_S"]:
                    report(f"still in contact {cfg['CLOSE_TIMEOUT_S']} s after the graph "
                           "ended; stopping the arm where it is (use the hardware e-stop)")
                    break
            elif eid == "command":
                timer.commanded(stamp_of(event), time.perf_counter())
                try:
                    cmd = Command.from_arrow(event["value"])
                except ValueError as err:
                    supervisor.on_fault("bad_command", f"malformed command: {err}")
                else:
                    ref = supervisor.on_command(stamp * 1e-9, stamp_of(event) * 1e-9,
                                                np.asarray(cmd.position),
                                                np.asarray(cmd.quaternion),
                                                np.asarray(cmd.twist), cmd.mode,
                                                np.asarray(cmd.normal) if cmd.normal else None)
                    if ref is not None:
                        send(ref)
                        sent = ref
            elif eid.startswith("estop"):
                meta = event["metadata"]
                reason = f": {meta['reason']}" if meta.get("reason") else ""
                supervisor.on_fault("estop", f"e-stop from {meta.get('source', eid)}{reason}")
            elif eid.startswith("events"):
                ev = SessionEvent.from_arrow(event["value"])
                if ev.kind == "done":
                    supervisor.on_done()
                    closing_since = closing_since or now
                elif ev.kind == "error":
                    supervisor.on_fault("error_event", ev.detail)
            if eid != "tick":
                flush_reports()
    finally:
        stats = timer.summary()
        if stats:
            print("robot: loop " + ", ".join(f"{k} {v:.2f}" for k, v in stats.items()),
                  flush=True)
        try:
            robot.stop()
            robot.join_motion(timeout=1.0)
        except Exception:  # preempted (ControlException) or already gone (NetworkException)
            pass


if __name__ == "__main__":
    main()
