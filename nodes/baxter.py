"""baxter: one arm of a Rethink Baxter, through rosbridge (roslibpy), in joint velocity mode.

Inputs: ``command`` (force-controller commands with ``joint_velocities``: OUTPUT
joint_velocity), ``events`` (session: ends on done), ``estop*`` (any message stops and
disables the arm until the graph restarts).
Outputs: ``robot_state`` (joints, the tool pose from the arm's model, the endpoint wrench,
the measured joint torques) at COMMAND_RATE_HZ, ``events`` (errors).

Every tick the node sends ``/robot/limb/<side>/joint_command`` (mode VELOCITY), faster than
the arm's own command timeout: the last accepted velocities while they are fresh, zeros
otherwise. It sends no motion while rosbridge is down, the arm is disabled or stopped, a
command was bad (malformed, too fast, its reference outside the workspace box or far from the
tool), the tool left the workspace box, the force passed FORCE_CAP_N, or an e-stop came;
each is one line and an error event. ``robot_state`` goes out once per new joint state.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np
from tuina.operators.arms import arm_kinematics
from tuina.operators.geometry import matrix_to_quat
from tuina.operators.safety import SafetyConfig, command_problem, outside_workspace

from tuina.config import Param
from tuina.messages import BASE_FRAME, Command, MessageError, RobotState, SessionEvent
from tuina.node import Outputs, configure, fail, paced_events

JOINTS = ("s0", "s1", "e0", "e1", "w0", "w1", "w2")
VELOCITY_MODE = 2  # baxter_core_msgs/JointCommand
RETRY_S = 0.25  # between attempts to reach rosbridge
# joint-state looks per command period: polled only at the command rate, states that come at
# that same rate beat against it and one in five was skipped
STATE_POLLS = 4

PARAMS = [
    Param("ROSBRIDGE_HOST", "str", "baxter.local", "-", "the rosbridge server on the robot's "
          "ROS master (roslaunch rosbridge_server rosbridge_websocket.launch)"),
    Param("ROSBRIDGE_PORT", "int", 9090, "-", "rosbridge websocket port", low=1, high=65535),
    Param("SIDE", "choice", "left", "-", "which arm (the left one's model is built in)",
          choices=("left",)),
    Param("CONNECT_TIMEOUT_S", "float", 2.0, "s", "give up connecting after this", low=0.1),
    Param("ENABLE", "bool", True, "-", "enable the robot at start (/robot/set_super_enable)"),
    Param("SPEED_RATIO", "float", 0.3, "-", "the arm's own joint speed limit, as a share of "
          "its maximum (/robot/limb/<side>/set_speed_ratio)", low=0.01, high=1.0),
    Param("COMMAND_RATE_HZ", "float", 100.0, "Hz", "velocity commands per second (the arm "
          "stops itself after 0.2 s without one); joint states are looked for STATE_POLLS "
          "times as often", low=20.0, high=1000.0),
    Param("WATCHDOG_S", "float", 0.1, "s", "velocities older than this are replaced by zeros",
          low=0.01),
    Param("STATE_TIMEOUT_S", "float", 0.5, "s", "no joint state for this long: the link is "
          "lost", low=0.05),
    Param("MAX_JOINT_SPEED", "float", 1.0, "rad/s", "a command faster than this on any joint "
          "is refused", low=0.01, high=4.0),
    Param("FORCE_CAP_N", "float", 15.0, "N", "hard contact force cap", low=1.0, high=40.0),
    Param("WORKSPACE_MIN", "floats", [0.2, -0.4, -0.3], "m", "workspace box (base): the "
          "table in front of the arm", length=3),
    Param("WORKSPACE_MAX", "floats", [1.0, 1.1, 0.5], "m", "workspace box (base)", length=3),
    Param("TOOL_LENGTH_M", "float", 0.0466, "m", "massage-ball contact point past the gripper "
          "frame", low=0.0),
]


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


def main() -> None:
    """Send velocity commands at a steady rate; publish the arm's state on the same ticks."""
    cfg = configure("baxter", PARAMS)
    from dora import Node

    node = Node()  # first: dora starts no node's dataflow until every node has joined
    try:
        link = BaxterLink(cfg["ROSBRIDGE_HOST"], cfg["ROSBRIDGE_PORT"], cfg["SIDE"],
                          cfg["CONNECT_TIMEOUT_S"])
    except ConnectionError as err:
        fail("baxter", str(err))
    arm = arm_kinematics(f"baxter_{cfg['SIDE']}", cfg["TOOL_LENGTH_M"])
    safety = SafetyConfig(tuple(cfg["WORKSPACE_MIN"]), tuple(cfg["WORKSPACE_MAX"]),
                          cfg["FORCE_CAP_N"])
    if cfg["ENABLE"]:
        link.enable(True)
    link.speed_ratio(cfg["SPEED_RATIO"])
    out = Outputs(node)
    zeros = np.zeros(len(JOINTS))
    velocities, accepted_at = zeros, 0.0
    fault = ""  # latched: no motion until the graph restarts
    waiting = ""  # why the arm may not move now (not latched)
    stamp = 0
    polls = 0
    seen_at = 0.0  # arrival of the joint state last handled
    sent = (-1, "")  # stamp and status of the last robot_state
    tool_position: np.ndarray | None = None

    def report(line: str) -> None:
        print(f"tuina-baxter: {line}", flush=True)
        out.send("events", SessionEvent("error", f"baxter: {line}").to_arrow(), stamp,
                 BASE_FRAME)

    def latch(line: str) -> None:
        nonlocal fault
        if not fault:
            fault = line
            link.send_velocities(zeros)
            report(f"{line}; stopped until the graph restarts")

    try:
        for event in paced_events(node, 1.0 / (cfg["COMMAND_RATE_HZ"] * STATE_POLLS)):
            eid = event["id"]
            if eid == "tick":
                polls += 1
                command_due = polls % STATE_POLLS == 0
                joints, joints_at, endpoint, assembly = link.snapshot()
                if not command_due and joints_at == seen_at:
                    continue  # nothing new, and no command due
                seen_at = joints_at
                if not link.connected:
                    latch("lost the rosbridge connection")
                    break
                if joints is None or time.monotonic() - joints_at > cfg["STATE_TIMEOUT_S"]:
                    if joints is not None:
                        latch(f"no joint state for {cfg['STATE_TIMEOUT_S']} s")
                        break
                    continue  # not one state yet: nothing to report, nothing to move
                held, why = not_ready(assembly)
                if why != waiting:
                    waiting = why
                    if why and assembly is not None:  # before the first one: just wait
                        report(why)
                try:
                    q, dq, effort = arm_joints(joints, link.names)
                except MessageError as err:
                    latch(f"bad joint state: {err}")
                    continue
                stamp = stamp_ns(joints)
                wrench = endpoint_wrench(endpoint)
                if np.linalg.norm(wrench[:3]) > cfg["FORCE_CAP_N"]:
                    latch(f"contact force {np.linalg.norm(wrench[:3]):.1f} N over the cap "
                          f"{cfg['FORCE_CAP_N']} N")
                tool = arm.forward(q)
                tool_position = tool.translation
                fresh = time.monotonic() - accepted_at <= cfg["WATCHDOG_S"]
                moving = not fault and not waiting and fresh
                if moving and (outside := outside_workspace(tool_position, safety)):
                    latch(f"the tool left the workspace box: its position {outside}")
                    moving = False
                if command_due:
                    link.send_velocities(velocities if moving else zeros)
                status = f"faulted:{fault}" if fault else held or "ok"
                if (stamp, status) == sent:
                    continue  # no new joint state since the last tick: nothing new to say
                sent = (stamp, status)
                out.send("robot_state", RobotState(
                    q.tolist(), dq.tolist(), tool_position.tolist(),
                    matrix_to_quat(tool.rotation).tolist(), wrench.tolist(), status,
                    effort.tolist()).to_arrow(), stamp, BASE_FRAME)
            elif eid == "command":
                command = Command.from_arrow(event["value"])
                v = np.asarray(command.joint_velocities, float)
                if v.shape != (len(JOINTS),) or not np.all(np.isfinite(v)):
                    latch(f"bad command: {len(v)} joint velocities, finite: "
                          f"{bool(np.all(np.isfinite(v)))}; expected 7 finite values (set the "
                          "force-controller's OUTPUT: joint_velocity)")
                elif np.max(np.abs(v)) > cfg["MAX_JOINT_SPEED"]:
                    latch(f"bad command: {np.max(np.abs(v)):.2f} rad/s over MAX_JOINT_SPEED "
                          f"{cfg['MAX_JOINT_SPEED']}")
                elif tool_position is None:
                    continue  # no state yet: nothing to check the command against
                elif problem := command_problem(np.asarray(command.position),
                                                np.asarray(command.quaternion), tool_position,
                                                safety):
                    latch(f"bad command: {problem}")
                else:
                    velocities, accepted_at = v, time.monotonic()
            elif eid.startswith("estop"):
                meta = event.get("metadata", {})
                reason = f": {meta['reason']}" if meta.get("reason") else ""
                link.enable(False)
                latch(f"e-stop from {meta.get('source', eid)}{reason}")
            elif eid == "events":
                if SessionEvent.from_arrow(event["value"]).kind == "done":
                    break
    finally:
        if link.connected:
            link.send_velocities(zeros)
        link.close()


if __name__ == "__main__":
    main()
