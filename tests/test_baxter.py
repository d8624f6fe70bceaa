"""The Baxter node against a rosbridge test double (tests/rosbridge_double.py): velocity
commands faster than the arm's timeout, the state it reads back, and no motion on doubt."""

import threading
import time

import numpy as np
import pytest

pytest.importorskip("roslibpy")

from tuina.messages import Command, Header, RobotState, SessionEvent  # noqa: E402

from .rosbridge_double import RosbridgeDouble  # noqa: E402

NAMES = [f"left_{j}" for j in ("s0", "s1", "e0", "e1", "w0", "w1", "w2")]
POSTURE = [0.0, -0.55, 0.0, 0.75, 0.0, 1.26, 0.0]
COMMAND_TOPIC = "/robot/limb/left/joint_command"


def posture_pose() -> tuple[list[float], list[float]]:
    """Where the massage ball is at POSTURE and how it is turned (x y z w), by the node's own
    kinematic model: the double's arm stands there, so commands hold that pose."""
    from scipy.spatial.transform import Rotation
    from tuina.operators.arms import arm_kinematics

    pose = arm_kinematics("baxter_left", 0.0466).forward(np.array(POSTURE))
    return pose.translation.tolist(), Rotation.from_matrix(pose.rotation).as_quat().tolist()


def posture_tool() -> list[float]:
    """Where the massage ball is at POSTURE."""
    return posture_pose()[0]


class RobotDouble:
    """The robot side: joint states at 200 Hz, the endpoint and assembly states."""

    def __init__(self, server: RosbridgeDouble, enabled: bool = True, force_z: float = -2.0,
                 period_s: float = 0.005):
        self.server, self.enabled, self.force_z = server, enabled, force_z
        self.period_s = period_s
        self.stamps: list[int] = []
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        k = 0
        while self.running:
            stamp = 1_000_000_000 + k * int(self.period_s * 1e9)
            self.stamps.append(stamp)
            secs, nsecs = divmod(stamp, 1_000_000_000)
            header = {"stamp": {"secs": secs, "nsecs": nsecs}, "frame_id": "base"}
            self.server.publish("/robot/joint_states", {
                "header": header, "name": ["head_pan", *NAMES],
                "position": [0.0, *POSTURE], "velocity": [0.0] * 8, "effort": [0.5] * 8})
            if k % max(1, round(0.05 / self.period_s)) == 0:
                self.server.publish("/robot/limb/left/endpoint_state", {
                    "header": header, "pose": {}, "twist": {},
                    "wrench": {"force": {"x": 0.0, "y": 0.0, "z": self.force_z},
                               "torque": {"x": 0.0, "y": 0.0, "z": 0.0}}})
                self.server.publish("/robot/state", {
                    "enabled": self.enabled, "stopped": False, "error": False,
                    "estop_button": 0, "estop_source": 0, "ready": True})
            k += 1
            time.sleep(self.period_s)


class TimedNode:
    """dora.testing.MockNode, with its events spaced in wall time (``at`` seconds after the
    first ``next``) and ``next(timeout)`` waiting as dora's does."""

    def __init__(self, events: list[tuple[float, dict]], end_s: float, robot_time=None,
                 on_start=None):
        from dora.testing import MockNode

        self.mock = MockNode([])
        self.events, self.end_s, self.start = list(events), end_s, None
        self.robot_time = robot_time  # stamps a command with the robot's time when it comes
        self.on_start = on_start  # called at the first ``next``: the node is connected by then

    def next(self, timeout=None):
        if self.start is None:
            self.start = time.monotonic()
            if self.on_start is not None:
                self.on_start()
        now = time.monotonic() - self.start
        if self.events and self.events[0][0] <= now:
            event = self.events.pop(0)[1]
            if event.get("id") == "command" and event["type"] == "INPUT" \
                    and self.robot_time is not None:
                event["metadata"] = {**event["metadata"], "stamp_ns": self.robot_time()}
            return event
        if now >= self.end_s:
            return {"type": "STOP", "id": "ALL_INPUTS_CLOSED"}
        due = self.events[0][0] if self.events else self.end_s
        time.sleep(max(0.0, min(due - now, timeout if timeout is not None else 1.0)))
        return {"type": "ERROR", "error": "Timeout"}

    def __getattr__(self, name):
        return getattr(self.mock, name)


def command(velocities, stamp: int, position=None) -> dict:
    tool, turn = posture_pose()
    cmd = Command(position or tool, turn, [0.0] * 6, "track", "press",
                  6.0, 5.0, list(velocities))
    return {"type": "INPUT", "id": "command", "value": cmd.to_arrow(),
            "metadata": Header(stamp, 0, "base").to_metadata()}


def run_baxter(monkeypatch, server, events, end_s, robot=None, on_start=None, **env):
    import dora
    from tuina.nodes import baxter

    monkeypatch.setenv("ROSBRIDGE_HOST", "127.0.0.1")
    monkeypatch.setenv("ROSBRIDGE_PORT", str(server.port))
    monkeypatch.setenv("CLOSE_TIMEOUT_S", "0.5")  # the double's arm never moves away
    # the double's arm presses from its first state: no start tare (it has its own test)
    monkeypatch.setenv("TARE_S", "0")
    # the double is up: connecting is slow only on a loaded machine (its timeout has a test)
    monkeypatch.setenv("CONNECT_TIMEOUT_S", "10")
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    node = TimedNode(events, end_s, (lambda: robot.stamps[-1]) if robot else None, on_start)
    monkeypatch.setattr(dora, "Node", lambda *a, **k: node)
    baxter.main()
    return node.mock


def done() -> dict:
    return {"type": "INPUT", "id": "events", "value": SessionEvent("done", "ok").to_arrow(),
            "metadata": Header(0, 0, "-").to_metadata()}


def commanded(server, velocities) -> int:
    """How many joint commands sent the controller's velocities."""
    return sum(m["command"] == pytest.approx(velocities)
               for _, m in server.published.get(COMMAND_TOPIC, []))


def tool_velocities(server) -> np.ndarray:
    """The tool's linear velocity of every non-zero joint command (the node's model)."""
    from tuina.operators.arms import arm_kinematics

    J = arm_kinematics("baxter_left", 0.0466).jacobian(np.array(POSTURE))
    return np.array([J[:3] @ np.asarray(c) for c in nonzero_commands(server)])


def assert_released_upwards(server, controller_velocities) -> None:
    """After the fault the controller's velocities are never sent again; what moves the arm
    moves the tool away from the body (the double's force pushes down on it), then zeros."""
    sent = [m["command"] for _, m in server.published[COMMAND_TOPIC]]
    last = max((i for i, c in enumerate(sent) if c == pytest.approx(controller_velocities)),
               default=-1)
    release = tool_velocities(server)[-5:]
    assert len(release) >= 5 and all(v[2] > 0.8 * np.linalg.norm(v) for v in release)
    assert last < len(sent) - 1


def nonzero_commands(server) -> list[list[float]]:
    return [m["command"] for _, m in server.published.get(COMMAND_TOPIC, [])
            if any(abs(v) > 0 for v in m["command"])]


def test_velocity_commands_flow_at_100_hz_and_the_state_comes_back(monkeypatch):
    v = [0.05, -0.02, 0.0, 0.03, 0.0, -0.01, 0.02]
    with RosbridgeDouble() as server:
        robot = RobotDouble(server, force_z=-0.2)  # out of contact when the session ends
        robot.thread.start()
        events = [(0.3 + 0.01 * k, command(v, k)) for k in range(100)]  # 1 s of commands
        events.append((1.305, done()))
        mock = run_baxter(monkeypatch, server, events, end_s=1.6, robot=robot)
        robot.running = False
    sent = server.published[COMMAND_TOPIC]
    assert all(m["mode"] == 2 and m["names"] == NAMES for _, m in sent)
    moving = [(t, m) for t, m in sent if any(m["command"])]
    assert moving and all(m["command"] == pytest.approx(v) for _, m in moving)
    times = np.array([t for t, _ in sent])
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert rate >= 95.0  # faster than Baxter's 0.2 s command timeout, by far
    assert max(np.diff(times)) < 0.05
    # the session's done, out of contact: zeros, and the node ends
    assert not any(sent[-1][1]["command"])
    assert server.published["/robot/set_super_enable"][0][1] == {"data": True}
    assert server.published["/robot/limb/left/set_speed_ratio"][0][1] == {"data": 0.3}
    statuses = [RobotState.from_arrow(m).status for m in mock.outputs["robot_state"]]
    assert "ok" in statuses and statuses[-1] == "finished"
    assert not mock.outputs.get("events")
    state = RobotState.from_arrow(mock.outputs["robot_state"][-1])
    assert state.q == pytest.approx(POSTURE)
    assert state.wrench[2] == pytest.approx(-0.2) and state.joint_torques == [0.5] * 7
    assert np.isfinite(state.tool_position).all()


def test_a_disabled_arm_is_reported_and_never_moved(monkeypatch):
    with RosbridgeDouble() as server:
        robot = RobotDouble(server, enabled=False, force_z=-0.1)
        robot.thread.start()
        events = [(0.3 + 0.01 * k, command([0.05] * 7, k)) for k in range(50)]
        events.append((0.795, done()))
        mock = run_baxter(monkeypatch, server, events, end_s=1.0, robot=robot, ENABLE="false")
        robot.running = False
    assert not nonzero_commands(server)
    details = [SessionEvent.from_arrow(v).detail for v in mock.outputs["events"]]
    assert details == ["baxter: the robot is disabled; enable it (ENABLE: true or "
                       "enable_robot.py -e)"]
    assert RobotState.from_arrow(mock.outputs["robot_state"][-1]).status == "disabled"


def test_force_over_the_cap_a_bad_command_or_an_estop_stop_the_arm(monkeypatch):
    with RosbridgeDouble() as server:
        robot = RobotDouble(server, force_z=-20.0)
        robot.thread.start()
        events = [(0.3 + 0.01 * k, command([0.05] * 7, k)) for k in range(30)]
        mock = run_baxter(monkeypatch, server, events, end_s=0.8, robot=robot)
        robot.running = False
    assert commanded(server, [0.05] * 7) == 0
    assert_released_upwards(server, [0.05] * 7)
    first = SessionEvent.from_arrow(mock.outputs["events"][0])
    assert "contact force 20.0 N over the cap 15.0 N" in first.detail
    assert first.kind == "error" and first.fault == "force_cap"
    assert RobotState.from_arrow(mock.outputs["robot_state"][-1]).status == "faulted:force_cap"

    with RosbridgeDouble() as server:
        robot = RobotDouble(server)
        robot.thread.start()
        events = [(0.3, command([0.05, float("nan"), 0, 0, 0, 0, 0], 0)),
                  (0.31, command([0.05] * 7, 1))]
        mock = run_baxter(monkeypatch, server, events, end_s=0.6, robot=robot)
        robot.running = False
    assert commanded(server, [0.05] * 7) == 0  # the good command after a bad one: never sent
    assert_released_upwards(server, [0.05] * 7)
    assert "bad command" in SessionEvent.from_arrow(mock.outputs["events"][0]).detail

    from tuina.estop import estop_message

    with RosbridgeDouble() as server:
        robot = RobotDouble(server)
        robot.thread.start()
        value, meta = estop_message("test button", "estop-button")
        events = [(0.3 + 0.01 * k, command([0.05] * 7, k)) for k in range(40)]
        events.insert(10, (0.395, {"type": "INPUT", "id": "estop", "value": value,
                                   "metadata": meta}))
        mock = run_baxter(monkeypatch, server, events, end_s=0.9, robot=robot)
        robot.running = False
    assert commanded(server, [0.05] * 7) >= 3  # followed until the button
    assert_released_upwards(server, [0.05] * 7)
    # released, not disabled: a disabled Baxter arm drops onto the body
    assert {"data": False} not in [m for _, m in server.published["/robot/set_super_enable"]]
    first = SessionEvent.from_arrow(mock.outputs["events"][0])
    assert "e-stop from estop-button: test button" in first.detail and first.fault == "estop"


def test_a_reference_outside_the_workspace_or_the_tool_leaving_it_stops_the_arm(monkeypatch):
    tool = np.array(posture_tool())
    top = f"1.0, 1.1, {tool[2] + 0.01:.4f}"  # the reference 3 cm above the tool is outside
    with RosbridgeDouble() as server:
        robot = RobotDouble(server)
        robot.thread.start()
        events = [(0.3 + 0.01 * k, command([0.05] * 7, k, (tool + [0, 0, 0.03]).tolist()))
                  for k in range(30)]
        mock = run_baxter(monkeypatch, server, events, end_s=0.8, robot=robot,
                          WORKSPACE_MAX=top)
        robot.running = False
    assert commanded(server, [0.05] * 7) == 0
    assert "is outside the workspace box" in \
        SessionEvent.from_arrow(mock.outputs["events"][0]).detail

    side = f"1.0, {tool[1] - 0.02:.4f}, 0.5"  # the tool is past it, the reference is not
    with RosbridgeDouble() as server:
        robot = RobotDouble(server)
        robot.thread.start()
        events = [(0.3 + 0.01 * k, command([0.05] * 7, k, (tool - [0, 0.045, 0]).tolist()))
                  for k in range(30)]
        mock = run_baxter(monkeypatch, server, events, end_s=0.8, robot=robot,
                          WORKSPACE_MAX=side)
        robot.running = False
    assert commanded(server, [0.05] * 7) == 0
    faults = [SessionEvent.from_arrow(v) for v in mock.outputs["events"]]
    faults = [e for e in faults if e.fault]
    assert faults[0].fault == "workspace" and "left the workspace box" in faults[0].detail
    assert len([e for e in faults if e.kind == "error" and e.fault == "workspace"]) == 1


def test_one_robot_state_per_joint_state(monkeypatch):
    with RosbridgeDouble() as server:
        robot = RobotDouble(server, period_s=0.025)  # 40 Hz: slower than the 100 Hz ticks
        robot.thread.start()
        mock = run_baxter(monkeypatch, server, [], end_s=1.2)
        robot.running = False
    states = mock.outputs["robot_state"]
    assert 20 <= len(states) <= len(robot.stamps)  # about 40 a second, not one per tick


def test_the_published_wrench_is_zeroed_by_the_start_tare(monkeypatch):
    with RosbridgeDouble() as server:
        robot = RobotDouble(server)
        robot.thread.start()
        mock = run_baxter(monkeypatch, server, [], end_s=1.0, robot=robot, TARE_S=0.3)
        robot.running = False
    wrench = [RobotState.from_arrow(s).wrench[2] for s in mock.outputs["robot_state"]]
    # raw until the zero is taken, from the first state: none goes out before the arm's
    # first force reading (once, under load, ten states had gone out at 0.0 N before it)
    assert wrench[0] == -2.0
    assert wrench[-1] == pytest.approx(0.0, abs=1e-9)  # the double's constant -2 N, zeroed


def test_rosbridge_down_is_one_line_within_the_timeout(monkeypatch, capfd):
    import dora
    from tuina.nodes import baxter

    monkeypatch.setattr(dora, "Node", lambda *a, **k: TimedNode([], 1.0))
    monkeypatch.setenv("ROSBRIDGE_HOST", "127.0.0.1")
    monkeypatch.setenv("ROSBRIDGE_PORT", "9")  # nothing listens there
    monkeypatch.setenv("CONNECT_TIMEOUT_S", "1.0")
    start = time.monotonic()
    with pytest.raises(SystemExit):
        baxter.main()
    assert time.monotonic() - start < 2.5
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach rosbridge at ws://127.0.0.1:9" in err[0]


def test_rosbridge_going_down_mid_session_stops_commanding(monkeypatch):
    with RosbridgeDouble() as server:
        robot = RobotDouble(server)
        robot.thread.start()
        events = [(0.3 + 0.01 * k, command([0.05] * 7, k)) for k in range(150)]
        def go_down() -> None:
            robot.running = False
            server.stop()

        # 0.8 s into the session, whatever connecting took
        mock = run_baxter(monkeypatch, server, events, end_s=2.0, robot=robot,
                          on_start=lambda: threading.Timer(0.8, go_down).start())
    details = [SessionEvent.from_arrow(v).detail for v in mock.outputs["events"]]
    assert len(details) == 1 and ("lost the rosbridge connection" in details[0]
                                  or "no joint state for" in details[0])


def test_the_simulated_baxter_moves_only_while_enabled_and_commanded():
    """The sim world's Baxter through the node's own rosbridge link: a disabled arm ignores
    velocity commands, an enabled one follows them, and it stops by itself once they stop
    coming (the arm's 0.2 s command timeout)."""
    from tuina.nodes.baxter import BaxterLink, arm_joints

    from tuina.sim.world import MassageWorld, WorldConfig

    def joints() -> np.ndarray:
        return arm_joints(link.snapshot()[0], NAMES)[0]

    def command(velocity: list[float], seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            link.send_velocities(np.array(velocity))
            time.sleep(0.01)

    # the body where the Baxter graphs expect it, below the arm's reach at rest
    with MassageWorld(WorldConfig(robot="baxter_left", rosbridge_port=0,
                                  body_position=(0.45, -0.1, -0.2), body_yaw_deg=-90.0,
                                  table_position=(0.5, -0.1, -0.2))) as world:
        link = BaxterLink("127.0.0.1", world.baxter.bridge.port, "left", 5.0)
        try:
            deadline = time.monotonic() + 5.0
            while link.snapshot()[3] is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert link.snapshot()[3]["enabled"] is False  # a Baxter starts disabled
            q0 = joints()
            command([0.2, 0, 0, 0, 0, 0, 0], 0.4)
            assert np.max(np.abs(joints() - q0)) < 2e-3

            link.enable(True)
            time.sleep(0.1)
            q1 = joints()
            command([0.2, 0, 0, 0, 0, 0, 0], 0.6)
            moved = joints() - q1
            assert 0.05 < moved[0] < 0.16, moved  # 0.12 rad at 0.2 rad/s, less the servo lag
            assert np.max(np.abs(moved[1:])) < 0.02, moved

            q2 = joints()
            time.sleep(0.5)
            q3 = joints()
            time.sleep(0.3)
            assert np.max(np.abs(q3 - q2)) < 0.06  # at most the timeout's worth of motion
            assert np.max(np.abs(joints() - q3)) < 2e-3  # then it holds
            assert link.snapshot()[3]["enabled"] is True
        finally:
            link.close()
