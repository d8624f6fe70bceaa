"""franka: a Franka FR3 through franky (the same node drives franky-sim in simulation).

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
from typing import Any

import numpy as np
from tuina.operators.geometry import quat_to_matrix
from tuina.operators.supervisor import Reference, Supervisor
from tuina.operators.timing import LoopTimer

from tuina.messages import BASE_FRAME, RobotState
from tuina.runtime import (
    Outputs,
    configure,
    fail,
    raise_priority,
    stamp_of,
    supervised_events,
)
from tuina.settings.franka import PARAMS
from tuina.supervision import SupervisedNode, supervisor_config

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


class FrankaArm:
    """The arm through franky: the tool point's pose from a state, a tool-point reference
    sent as franky's end-effector reference, the collision reflex, error recovery."""

    def __init__(self, robot: Any, cfg: dict[str, Any]):
        import franky

        self.franky, self.robot = franky, robot
        self.tool_offset = np.array([0.0, 0.0, cfg["TOOL_LENGTH_M"]])
        robot.recover_from_errors()
        # the arm's own 1 kHz reflex: a Cartesian force over the cap stops it (franky-sim
        # acknowledges the setting and does not simulate it)
        cap = cfg["FORCE_CAP_N"] * cfg["REFLEX_MARGIN"]
        robot.set_collision_behavior([cap * TORQUE_PER_N] * 7, [cap] * 3 + [cap * 0.2] * 3)
        self.motion = franky.CartesianImpedanceTrackingMotion(
            translational_stiffness=cfg["STIFFNESS_N_PER_M"],
            rotational_stiffness=cfg["ROT_STIFFNESS_NM_PER_RAD"])
        self.sent = Reference(*self.tool_pose(robot.state))
        self.send(self.sent)
        robot.move(self.motion, asynchronous=True)

    def tool_pose(self, state: Any) -> tuple[np.ndarray, np.ndarray]:
        """The massage ball's contact point and the end-effector's orientation."""
        ee = state.O_T_EE
        q = np.asarray(ee.quaternion)
        return np.asarray(ee.translation) + quat_to_matrix(q) @ self.tool_offset, q

    def send(self, ref: Reference) -> None:
        """The tool-point reference as franky's end-effector reference (once per new one)."""
        self.sent = ref
        franky = self.franky
        offset = quat_to_matrix(ref.quaternion) @ self.tool_offset
        ee = franky.Affine(ref.position - offset, ref.quaternion)
        if ref.twist is None:
            self.motion.set_reference(franky.CartesianReference(ee))
            return
        # the end-effector moves with the tool point: v_ee = v_tool + w x (ee - tool)
        linear = ref.twist[:3] + np.cross(ref.twist[3:], -offset)
        self.motion.set_reference(franky.CartesianReference(
            ee, franky.Twist(linear, ref.twist[3:])))

    def recover(self) -> str:
        """After the arm's own error (a reflex stopped the motion): recover and move again,
        so a release can; why it cannot, or ""."""
        try:
            self.robot.recover_from_errors()
            self.robot.move(self.motion, asynchronous=True)
        except Exception as err:  # libfranka's control errors
            return f"cannot recover from the arm's error ({err}); use the hardware e-stop"
        return ""

    def stop(self) -> None:
        try:
            self.robot.stop()
            self.robot.join_motion(timeout=1.0)
        except Exception:  # preempted (ControlException) or already gone (NetworkException)
            pass


def latch_robot_errors(arm: FrankaArm, supervisor: Supervisor, shared: SupervisedNode) -> None:
    """A robot that reports an error: the supervisor's fault (released, held), then an
    automatic recovery; a recovery that fails is reported."""
    if arm.robot.has_errors:
        supervisor.on_fault("robot_error", f"the robot reports an error "
                            f"({arm.robot.current_errors})")
        if why := arm.recover():
            shared.report(why, fault="robot_error")


def main() -> None:
    """Drive the arm from commands under the safety supervisor; publish its state."""
    cfg = configure("franka", PARAMS)
    raise_priority("franka", cfg["NICE"], cfg["REALTIME_PRIORITY"])
    from dora import Node

    supervisor = Supervisor(supervisor_config(cfg, cfg["MAX_SPEED"], cfg["REFERENCE_LEAD_S"],
                                              MAX_LEAD_M))
    node = Node()
    try:
        arm = FrankaArm(connect(cfg["FRANKA_IP"], cfg["CONNECT_TIMEOUT_S"], cfg["REALTIME"]),
                        cfg)
    except TimeoutError as err:
        fail("franka", str(err))
    out = Outputs(node)
    shared = SupervisedNode(supervisor, out, "franka", cfg["CLOSE_TIMEOUT_S"])
    timer = LoopTimer()
    clock = (-1, time.monotonic())  # robot time (ms), wall time when it last advanced
    try:
        for event in supervised_events(node, 1.0 / cfg["STATE_RATE_HZ"]):
            now = time.monotonic()
            if shared.handle(event, now):
                continue
            if event["id"] == "command":
                timer.commanded(stamp_of(event), time.perf_counter())
                if accepted := shared.command(event):
                    arm.send(accepted[1])
                continue
            try:
                state = arm.robot.state
                robot_ms = int(state.time.to_msec())
            except Exception as err:  # libfranka's network and control errors
                shared.lost(f"lost the robot connection ({err})")
                break
            clock = (robot_ms, now) if robot_ms != clock[0] else clock
            if now - clock[1] > cfg["CONNECTION_TIMEOUT_S"]:
                shared.lost(f"lost the robot connection: its clock stopped {now - clock[1]:.2f}"
                            " s ago")
                break
            latch_robot_errors(arm, supervisor, shared)
            tool_p, tool_q = arm.tool_pose(state)
            wrench = np.asarray(state.O_F_ext_hat_K, float)
            if (ref := supervisor.on_state(robot_ms * 1e-3, tool_p, tool_q, wrench)) \
                    is not arm.sent:
                arm.send(ref)
            shared.stamp = robot_ms * 1_000_000
            out.send("robot_state", RobotState(
                list(state.q), list(state.dq), tool_p.tolist(), tool_q.tolist(),
                supervisor.wrench.tolist(), supervisor.status,
                list(state.tau_J)).to_arrow(), shared.stamp, BASE_FRAME)
            timer.published(shared.stamp, time.perf_counter())
            shared.flush()
            if shared.done(now):
                break
    finally:
        if stats := timer.summary():
            print("franka: loop " + ", ".join(f"{k} {v:.2f}" for k, v in stats.items()),
                  flush=True)
        arm.stop()


if __name__ == "__main__":
    main()
