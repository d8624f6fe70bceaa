"""robot: a Franka FR3 through franky (the same node drives franky-sim in simulation).

Inputs: ``tick`` (state publishing clock when STATE_RATE_HZ is 0, e.g.
dora/timer/millis/10; otherwise the node keeps its own schedule), ``command`` (tool
reference), ``estop`` and any other input whose name starts with ``estop`` (any message
stops the arm until the graph restarts: wire the operator's ``tuina estop`` button or any
node's output there), ``events`` (the session's ``done`` ends the motion cleanly).
Outputs: ``robot_state`` (stamped with the robot's own clock), ``events`` (e-stop, faults,
a lost connection: one error line each).

Safety lives here whatever upstream sends: NaN, malformed or out-of-workspace commands
latch a fault and hold; a force above the cap latches a fault and retreats; no fresh command
for WATCHDOG_S holds the arm where it is; the reference moves at most MAX_SPEED. A robot
whose state cannot be read, or whose clock stops for CONNECTION_TIMEOUT_S, is reported lost
and the node stops.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from tuina.operators.geometry import quat_to_matrix
from tuina.operators.safety import (
    SafetyConfig,
    command_problem,
    contact_force,
    feed_forward,
    rate_limit,
    retreat_point,
)
from tuina.operators.timing import LoopTimer

from tuina.config import Param
from tuina.messages import BASE_FRAME, Command, RobotState, SessionEvent
from tuina.node import (
    PRIORITY_PARAMS,
    Outputs,
    configure,
    events,
    fail,
    paced_events,
    raise_priority,
    stamp_of,
)

PARAMS = [
    Param("FRANKA_IP", "str", "172.16.0.2", "-", "robot (or franky-sim) address"),
    Param("CONNECT_TIMEOUT_S", "float", 2.0, "s", "give up connecting after this", low=0.1),
    Param("TOOL_LENGTH_M", "float", 0.0466, "m",
          "massage-ball contact point past franky's end-effector frame", low=0.0),
    Param("STIFFNESS_N_PER_M", "float", 1500.0, "N/m", "Cartesian impedance, translation",
          low=50, high=3000),
    Param("ROT_STIFFNESS_NM_PER_RAD", "float", 60.0, "N m/rad", "Cartesian impedance, rotation",
          low=5, high=300),
    Param("FORCE_CAP_N", "float", 15.0, "N", "hard contact force cap", low=1.0, high=40.0),
    Param("WORKSPACE_MIN", "floats", [0.15, -0.75, 0.0], "m", "workspace box (base)",
          length=3),
    Param("WORKSPACE_MAX", "floats", [0.85, 0.75, 0.8], "m", "workspace box (base)",
          length=3),
    Param("MAX_SPEED", "float", 0.15, "m/s", "reference speed limit", low=0.001, high=1.0),
    Param("WATCHDOG_S", "float", 0.1, "s", "hold when no command is this old", low=0.01),
    Param("CONNECTION_TIMEOUT_S", "float", 0.5, "s",
          "the robot's clock standing still this long (wall time) means the connection is lost",
          low=0.05),
    Param("REFERENCE_LEAD_S", "float", 0.12, "s",
          "a moving reference is set this far ahead along its feed-forward velocity: the "
          "impedance's lag behind a ramp (0.074 s at 2500 N/m, 0.35 s at 800 N/m in "
          "franky-sim; 0: off)", low=0, high=0.5),
    Param("STATE_RATE_HZ", "float", 100.0, "Hz", "robot states published on this node's own "
          "absolute schedule (steadier than a dora timer, whose ticks pass through the daemon); "
          "0: on each ``tick`` input", low=0, high=1000),
    Param("REALTIME", "bool", False, "-", "enforce a realtime kernel (real robots: true)"),
    *PRIORITY_PARAMS,
]


MAX_LEAD_M = 0.02  # the reference never runs further ahead of the commanded position


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
    """Drive the arm from commands, publish its state on every tick."""
    cfg = configure("robot", PARAMS)
    raise_priority("robot", cfg["NICE"], cfg["REALTIME_PRIORITY"])
    import franky
    from dora import Node

    safety = SafetyConfig(tuple(cfg["WORKSPACE_MIN"]), tuple(cfg["WORKSPACE_MAX"]),
                          cfg["FORCE_CAP_N"], cfg["MAX_SPEED"], 0.05, cfg["WATCHDOG_S"])
    node = Node()
    try:
        robot = connect(cfg["FRANKA_IP"], cfg["CONNECT_TIMEOUT_S"], cfg["REALTIME"])
    except TimeoutError as err:
        fail("robot", str(err))
    robot.recover_from_errors()
    tool_offset = np.array([0.0, 0.0, cfg["TOOL_LENGTH_M"]])
    motion = franky.CartesianImpedanceTrackingMotion(
        translational_stiffness=cfg["STIFFNESS_N_PER_M"],
        rotational_stiffness=cfg["ROT_STIFFNESS_NM_PER_RAD"])

    def tool_pose(state) -> tuple[np.ndarray, np.ndarray]:
        ee = state.O_T_EE
        q = np.asarray(ee.quaternion)
        return np.asarray(ee.translation) + quat_to_matrix(q) @ tool_offset, q

    def send_reference(position: np.ndarray, quat: np.ndarray,
                       twist: np.ndarray | None = None) -> None:
        offset = quat_to_matrix(quat) @ tool_offset
        ee = position - offset
        if twist is None:
            motion.set_reference(franky.CartesianReference(franky.Affine(ee, quat)))
            return
        # the end-effector moves with the tool point: v_ee = v_tool + w x (ee - tool)
        linear = twist[:3] + np.cross(twist[3:], -offset)
        lead = linear * cfg["REFERENCE_LEAD_S"]
        if np.linalg.norm(lead) > MAX_LEAD_M:
            lead *= MAX_LEAD_M / np.linalg.norm(lead)
        motion.set_reference(franky.CartesianReference(
            franky.Affine(ee + lead, quat), franky.Twist(linear, twist[3:])))

    state = robot.state
    reference, ref_quat = tool_pose(state)
    send_reference(reference, ref_quat)
    robot.move(motion, asynchronous=True)
    out = Outputs(node)
    status = "ok"
    fault: str | None = None
    last_command = None  # wall time of the last accepted command: the watchdog's clock
    timer = LoopTimer()
    clock = (-1, time.monotonic())  # robot time (ms), wall time when it last advanced
    stamp = 0

    def report(line: str) -> None:
        print(f"tuina-robot: {line}", flush=True)
        out.send("events", SessionEvent("error", f"robot: {line}").to_arrow(), stamp, BASE_FRAME)

    def hold_at(position: np.ndarray, quat: np.ndarray,
                twist: np.ndarray | None = None) -> None:
        nonlocal reference, ref_quat
        reference, ref_quat = position, quat
        send_reference(reference, ref_quat, twist)

    try:
        stream = (paced_events(node, 1.0 / cfg["STATE_RATE_HZ"]) if cfg["STATE_RATE_HZ"] > 0
                  else events(node, timers=("tick",)))
        for event in stream:
            now = time.monotonic()
            if event["id"] == "tick":
                try:
                    state = robot.state
                except Exception as err:  # libfranka's network and control errors
                    report(f"lost the robot connection ({err}); stopping")
                    break
                robot_ms = int(state.time.to_msec())
                if robot_ms != clock[0]:
                    clock = (robot_ms, now)
                elif now - clock[1] > cfg["CONNECTION_TIMEOUT_S"]:
                    report(f"lost the robot connection: its clock stopped {now - clock[1]:.2f} "
                           "s ago; stopping")
                    break
                tool_p, tool_q = tool_pose(state)
                wrench = np.asarray(state.O_F_ext_hat_K, float)
                if fault is None and contact_force(wrench) > safety.force_cap_n:
                    fault = "faulted:force_cap"
                    hold_at(retreat_point(tool_p, wrench, safety.retreat_m), tool_q)
                    print(f"tuina-robot: force {contact_force(wrench):.1f} N over the cap "
                          f"{safety.force_cap_n} N: retreating", flush=True)
                if (fault is None and last_command is not None
                        and now - last_command > safety.watchdog_s and status != "watchdog"):
                    status = "watchdog"
                    hold_at(tool_p, tool_q)
                    print(f"tuina-robot: no command for {now - last_command:.2f} s: holding",
                          flush=True)
                if robot.has_errors and fault is None:
                    fault = "faulted:robot_error"
                    report(f"the robot reports an error ({robot.current_errors}); holding")
                msg = RobotState(list(state.q), list(state.dq), tool_p.tolist(),
                                 tool_q.tolist(), wrench.tolist(), fault or status,
                                 list(state.tau_J))
                stamp = robot_ms * 1_000_000
                out.send("robot_state", msg.to_arrow(), stamp, BASE_FRAME)
                timer.published(stamp, time.perf_counter())
            elif event["id"] == "command":
                timer.commanded(stamp_of(event), time.perf_counter())
                if fault is not None:
                    continue
                try:
                    cmd = Command.from_arrow(event["value"])
                except ValueError as err:
                    fault = "faulted:malformed_command"
                    print(f"tuina-robot: error: {err}", flush=True)
                    continue
                tool_p, tool_q = tool_pose(robot.state)
                problem = command_problem(np.asarray(cmd.position), np.asarray(cmd.quaternion),
                                          tool_p, safety)
                twist = feed_forward(np.asarray(cmd.twist), safety)
                if problem is None and twist is None:
                    problem = f"command twist {cmd.twist} is not 6 finite numbers"
                if problem is not None:
                    fault = "faulted:bad_command"
                    hold_at(tool_p, tool_q)
                    print(f"tuina-robot: error: {problem}; holding", flush=True)
                    continue
                if cmd.mode == "stop":
                    fault = "faulted:controller_stop"
                    hold_at(np.asarray(cmd.position), tool_q)
                    continue
                period = 0.01 if last_command is None else min(max(now - last_command, 0.0), 0.05)
                status = "ok"
                last_command = now
                target = rate_limit(reference, np.asarray(cmd.position), safety.max_speed,
                                    period)
                hold_at(target, np.asarray(cmd.quaternion), twist if cmd.mode == "track" else None)
            elif event["id"].startswith("estop"):
                if fault == "estop":
                    continue
                try:
                    robot.stop()
                except franky.ControlException:
                    pass  # stopping an async motion reports it as preempted
                fault = "estop"
                meta = event["metadata"]
                reason = f": {meta['reason']}" if meta.get("reason") else ""
                report(f"e-stop from {meta.get('source', event['id'])}{reason}; stopped until "
                       "the graph restarts")
            elif event["id"] == "events":
                if SessionEvent.from_arrow(event["value"]).kind == "done":
                    break
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
