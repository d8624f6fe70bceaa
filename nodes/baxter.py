"""baxter: one arm of a Rethink Baxter, through rosbridge (roslibpy), in joint velocity mode.

Inputs: ``command`` (force-controller commands with ``joint_velocities``: OUTPUT
joint_velocity), ``events*`` (every node's events: an error is a fault; the session's
``done`` ends the node once out of contact), ``estop*`` (the operator's e-stop).
Outputs: ``robot_state`` (joints, the tool pose from the arm's model, the endpoint wrench,
the measured joint torques) once per new joint state, ``events`` (one error per fault,
naming it, and ``released``).

Every tick the node sends ``/robot/limb/<side>/joint_command`` (mode VELOCITY), faster than
the arm's own command timeout. The same safety supervisor as the FR3's decides
(operators.supervisor): the controller's velocities while all is well; on any fault (see the
FR3 node) joint velocities that release contact (q' = J^+ v towards the release reference),
then zeros. It sends no motion while rosbridge is down or the arm is disabled or stopped;
the e-stop releases and holds (a disabled Baxter arm would drop onto the body).
"""

from __future__ import annotations

import functools
import math
import threading
import time
from typing import Any

import numpy as np
from tuina.operators.arms import arm_kinematics
from tuina.operators.force_control import ControlOutput
from tuina.operators.geometry import matrix_to_quat
from tuina.operators.servo import joint_velocity_command
from tuina.operators.supervisor import Reference, Supervisor

from tuina.messages import BASE_FRAME, Command, MessageError, RobotState
from tuina.runtime import Outputs, configure, fail, supervised_events
from tuina.settings.baxter import PARAMS
from tuina.supervision import SupervisedNode, supervisor_config

JOINTS = ("s0", "s1", "e0", "e1", "w0", "w1", "w2")
VELOCITY_MODE = 2  # baxter_core_msgs/JointCommand
RETRY_S = 0.25  # between attempts to reach rosbridge
# joint-state looks per command period: polled only at the command rate, states that come at
# that same rate beat against it and one in five was skipped
STATE_POLLS = 4
RELEASE_GAIN = 4.0  # 1/s: PBVS gain towards the release reference


class BaxterLink:
    """The arm's topics over rosbridge: latest joint state, endpoint state and assembly
    state in, joint commands, enable and speed ratio out."""

    def __init__(self, host: str, port: int, side: str, timeout_s: float):
        import roslibpy

        self.side = side
        self.names = [f"{side}_{j}" for j in JOINTS]
        self.ros = roslibpy.Ros(host=host, port=port)
        # retry every RETRY_S, not on roslibpy's growing back-off (1 s, 2.7 s, 7.4 s, ...): a
        # rosbridge that comes up while the node waits (the sim world's) is met at once
        self.ros.factory.initialDelay = self.ros.factory.maxDelay = RETRY_S
        try:
            self.ros.run(timeout=timeout_s)
        except Exception as err:  # roslibpy raises plain Exceptions on timeouts
            raise ConnectionError(f"cannot reach rosbridge at ws://{host}:{port} within "
                                  f"{timeout_s:.1f} s ({err}); check ROSBRIDGE_HOST/PORT and "
                                  "that rosbridge_websocket runs on the robot") from None
        self.lock = threading.Lock()
        self.joints: dict[str, Any] | None = None
        self.joints_at = 0.0  # wall time of the last joint state
        self.endpoint: dict[str, Any] | None = None
        self.assembly: dict[str, Any] | None = None

        def keep(attr: str) -> Any:
            def callback(msg: dict) -> None:
                with self.lock:
                    setattr(self, attr, msg)
                    if attr == "joints":
                        self.joints_at = time.monotonic()
            return callback

        topic = roslibpy.Topic
        self.subscriptions = [
            topic(self.ros, "/robot/joint_states", "sensor_msgs/JointState"),
            topic(self.ros, f"/robot/limb/{side}/endpoint_state",
                  "baxter_core_msgs/EndpointState"),
            topic(self.ros, "/robot/state", "baxter_core_msgs/AssemblyState"),
        ]
        for sub, attr in zip(self.subscriptions, ("joints", "endpoint", "assembly"), strict=True):
            sub.subscribe(keep(attr))
        self.command = topic(self.ros, f"/robot/limb/{side}/joint_command",
                             "baxter_core_msgs/JointCommand", queue_size=1)
        self.enable_topic = topic(self.ros, "/robot/set_super_enable", "std_msgs/Bool")
        self.speed_topic = topic(self.ros, f"/robot/limb/{side}/set_speed_ratio",
                                 "std_msgs/Float64")
        for pub in (self.command, self.enable_topic, self.speed_topic):
            pub.advertise()

    @property
    def connected(self) -> bool:
        return bool(self.ros.is_connected)

    def send_velocities(self, velocities: np.ndarray) -> None:
        """One JointCommand in velocity mode."""
        import roslibpy

        self.command.publish(roslibpy.Message({"mode": VELOCITY_MODE,
                                               "command": [float(v) for v in velocities],
                                               "names": self.names}))

    def enable(self, on: bool) -> None:
        import roslibpy

        self.enable_topic.publish(roslibpy.Message({"data": bool(on)}))

    def speed_ratio(self, ratio: float) -> None:
        import roslibpy

        self.speed_topic.publish(roslibpy.Message({"data": float(ratio)}))

    def snapshot(self) -> tuple[dict | None, float, dict | None, dict | None]:
        with self.lock:
            return self.joints, self.joints_at, self.endpoint, self.assembly

    def close(self) -> None:
        try:
            self.ros.close()
        except Exception:  # closing a link that is already gone
            pass

    def __enter__(self) -> BaxterLink:
        return self

    def __exit__(self, *exc: object) -> None:
        """The arm is left commanded still (when still reachable), then the link closed."""
        if self.connected:
            self.send_velocities(np.zeros(len(self.names)))
        self.close()


def arm_joints(msg: dict, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """q, dq and efforts of the arm's seven joints from a JointState of the whole robot."""
    index = {n: i for i, n in enumerate(msg.get("name", []))}
    missing = [n for n in names if n not in index]
    if missing:
        raise MessageError(f"joint state lacks {', '.join(missing)}")
    pick = [index[n] for n in names]

    def column(key: str) -> np.ndarray:
        values = msg.get(key) or []
        return np.array([float(values[i]) if i < len(values) else math.nan for i in pick])
    return column("position"), column("velocity"), column("effort")


def stamp_ns(msg: dict) -> int:
    """A ROS header stamp in ns."""
    stamp = msg.get("header", {}).get("stamp", {})
    return int(stamp.get("secs", 0)) * 1_000_000_000 + int(stamp.get("nsecs", 0))


def endpoint_wrench(msg: dict | None) -> np.ndarray:
    """The endpoint wrench (base frame) of an EndpointState; zeros before the first."""
    if msg is None:
        return np.zeros(6)
    f, t = msg["wrench"]["force"], msg["wrench"]["torque"]
    return np.array([f["x"], f["y"], f["z"], t["x"], t["y"], t["z"]], float)


def not_ready(assembly: dict | None) -> tuple[str, str]:
    """Whether the arm may move now, from the AssemblyState: ("", "") if it may, else its
    status for robot_state (waiting | estop | stopped | disabled) and why."""
    if assembly is None:
        return "waiting", "no /robot/state from the robot yet"
    if assembly.get("estop_button"):
        return "estop", "the robot's e-stop button is pressed"
    if assembly.get("stopped") or assembly.get("error"):
        return "stopped", "the robot reports stopped or error; reset it (enable_robot.py -r)"
    if not assembly.get("enabled"):
        return "disabled", "the robot is disabled; enable it (ENABLE: true or " \
            "enable_robot.py -e)"
    return "", ""


def release_velocities(arm, q: np.ndarray, ref: Reference) -> np.ndarray:
    """Joint velocities that move the tool along the supervisor's release reference: its
    twist fed forward, PBVS towards its pose (q' = J^+ v)."""
    twist = np.zeros(6) if ref.twist is None else ref.twist
    target = ControlOutput(ref.position, ref.quaternion, "track", "release", 0.0, 0.0, twist)
    return joint_velocity_command(target, arm, q, RELEASE_GAIN)


def velocity_problem(command: Command, max_speed: float) -> str:
    """Why a command's joint velocities must not be sent, or ""."""
    v = np.asarray(command.joint_velocities, float)
    if v.shape != (len(JOINTS),) or not np.all(np.isfinite(v)):
        return (f"bad command: {len(v)} joint velocities, finite: "
                f"{bool(np.all(np.isfinite(v)))}; expected 7 finite values (set the "
                "force-controller's OUTPUT: joint_velocity)")
    if np.max(np.abs(v)) > max_speed * (1 + 1e-9):  # the controller scales to the limit itself
        return f"bad command: {np.max(np.abs(v)):.2f} rad/s over MAX_JOINT_SPEED {max_speed}"
    return ""


def tool_pose(arm: Any, q: np.ndarray) -> tuple[Any, np.ndarray]:
    """The tool's pose (SE3) at joints ``q`` and its quaternion."""
    tool = arm.forward(q)
    return tool, matrix_to_quat(tool.rotation)


def link_fault(link: Any, joints: Any, joints_at: float, now: float, timeout_s: float) -> str:
    """Why the rosbridge link can no longer be trusted: closed, or its joint states stopped
    coming; "" while it holds (or no state has come yet)."""
    if not link.connected:
        return "lost the rosbridge connection"
    if joints is not None and now - joints_at > timeout_s:
        return f"no joint state for {timeout_s} s"
    return ""


def main() -> None:
    """Steady velocity commands under the supervisor; a state per new joint state."""
    cfg = configure("baxter", PARAMS)
    from dora import Node

    node = Node()  # first: dora starts no node's dataflow until every node has joined
    link = open_link(cfg)
    arm = arm_kinematics(f"baxter_{cfg['SIDE']}", cfg["TOOL_LENGTH_M"])
    supervisor = Supervisor(supervisor_config(cfg))
    out = Outputs(node)
    shared = SupervisedNode(supervisor, out, "baxter", cfg["CLOSE_TIMEOUT_S"])
    velocities = np.zeros(len(JOINTS))
    waiting = ""  # why the arm may not move now (not latched)
    polls, seen_at = 0, 0.0  # ticks so far; arrival of the joint state last handled
    sent = (-1, "")  # stamp and status of the last robot_state
    check = functools.partial(velocity_problem, max_speed=cfg["MAX_JOINT_SPEED"])
    with link:
        for event in supervised_events(node, 1.0 / (cfg["COMMAND_RATE_HZ"] * STATE_POLLS)):
            now = time.monotonic()
            if shared.handle(event, now):
                continue
            if event["id"] == "command":
                if accepted := shared.command(event, check):
                    velocities = np.asarray(accepted[0].joint_velocities, float)
                continue
            polls += 1
            command_due = polls % STATE_POLLS == 0  # else only a look for a new state
            joints, joints_at, endpoint, assembly = link.snapshot()
            if not command_due and joints_at == seen_at:
                continue  # nothing new, and no command due
            seen_at = joints_at
            if fault := link_fault(link, joints, joints_at, now, cfg["STATE_TIMEOUT_S"]):
                shared.lost(fault)
                break
            if joints is None or endpoint is None:  # no state or force reading yet: no zeros
                continue
            held, why = not_ready(assembly)
            if why != waiting and (waiting := why) and assembly is not None:
                shared.report(why)  # before the first assembly state: just wait
            try:
                q, dq, effort = arm_joints(joints, link.names)
            except MessageError as err:
                shared.lost(f"bad joint state: {err}")
                continue
            shared.stamp = stamp_ns(joints)
            tool, quat = tool_pose(arm, q)
            ref = supervisor.on_state(shared.stamp * 1e-9, tool.translation, quat,
                                      endpoint_wrench(endpoint))
            if command_due:
                link.send_velocities(arm_velocities(supervisor.mode, bool(waiting), velocities,
                                                    arm, q, ref))
            status = supervisor.status if supervisor.latched or not held else held
            shared.flush()
            if (shared.stamp, status) != sent:  # else: no new joint state since the last tick
                sent = (shared.stamp, status)
                out.send("robot_state", RobotState(*(v.tolist() for v in (
                    q, dq, tool.translation, quat, supervisor.wrench)), status,
                    effort.tolist()).to_arrow(), shared.stamp, BASE_FRAME)
            if shared.done(now):
                break


def open_link(cfg: dict) -> BaxterLink:
    """The rosbridge link to the arm, enabled (ENABLE) at SPEED_RATIO; one error line and
    exit when rosbridge is not reached within CONNECT_TIMEOUT_S."""
    try:
        link = BaxterLink(cfg["ROSBRIDGE_HOST"], cfg["ROSBRIDGE_PORT"], cfg["SIDE"],
                          cfg["CONNECT_TIMEOUT_S"])
    except ConnectionError as err:
        fail("baxter", str(err))
    if cfg["ENABLE"]:
        link.enable(True)
    link.speed_ratio(cfg["SPEED_RATIO"])
    return link


def arm_velocities(mode: str, waiting: bool, commanded: np.ndarray, arm: Any,
                   q: np.ndarray, ref: Reference) -> np.ndarray:
    """What the arm is sent in the supervisor's ``mode``: the controller's velocities while
    following, the release's while releasing, zeros otherwise or while the arm may not
    move."""
    if waiting or mode in ("waiting", "hold", "finished"):
        return np.zeros_like(commanded)
    return release_velocities(arm, q, ref) if mode == "release" else commanded


if __name__ == "__main__":
    main()
