"""Each node run without a daemon through dora.testing.MockNode, in a fixed order."""

import time

import dora
import numpy as np
import pytest
from dora.testing import MockNode
from scipy.spatial.transform import Rotation
from tuina.operators.geometry import make_transform

from tuina.messages import (
    BodyMotion,
    Command,
    GroundedTarget,
    Header,
    Instruction,
    RobotState,
    SessionEvent,
    TargetPose,
    Trajectory,
    decode_targets,
    encode_depth,
    encode_targets,
)

from .test_operators import (
    BASE_T_CAM,
    SIM_CAM_T,
    K,
    block_on_table_depth,
    phantom_depth,
    plane_depth,
)


def meta(stamp: int, frame: str = "base", seq: int = 0) -> dict:
    return Header(stamp, seq, frame).to_metadata()


def run_node(monkeypatch, main, events) -> MockNode:
    mock = MockNode(events)
    monkeypatch.setattr(dora, "Node", lambda *a, **k: mock)
    main()
    return mock


def camera_info_event(stamp: int = 0) -> dict:
    from tuina.messages import CameraInfo

    info = CameraInfo(640, 480, K[0, 0], K[1, 1], K[0, 2], K[1, 2], [0.0] * 5,
                      BASE_T_CAM.ravel().tolist(), 0.001)
    return {"type": "INPUT", "id": "camera_info", "value": info.to_arrow(),
            "metadata": meta(stamp, "camera_color_optical")}


def depth_event(depth: np.ndarray, stamp: int) -> dict:
    array, md = encode_depth(depth, Header(stamp, 0, "camera_color_optical"))
    return {"type": "INPUT", "id": "depth", "value": array, "metadata": md}


def test_grounding_reports_unknown_acupoint_and_sends_no_target(monkeypatch):
    from tuina.nodes import grounding

    mock = run_node(monkeypatch, grounding.main, [
        camera_info_event(),
        {"type": "INPUT", "id": "instruction", "value": Instruction("press Zusanly").to_arrow(),
         "metadata": meta(1)},
        depth_event(plane_depth(0.1), 2),
    ])
    assert "targets" not in mock.outputs
    event = SessionEvent.from_arrow(mock.outputs["events"][0])
    assert event.kind == "error" and "Zusanli" in event.detail


def targets_event(target: GroundedTarget, stamp: int) -> dict:
    return {"type": "INPUT", "id": "targets", "value": encode_targets([target]),
            "metadata": meta(stamp, "camera_color_optical")}


def test_pose_fit_turns_a_pixel_and_a_stroke_into_a_pose(monkeypatch):
    from tuina.nodes import pose_fit

    target = GroundedTarget("ST36", "Zusanli", 1, [300, 220, 340, 260], [319.5, 239.5],
                            [319.5, 239.5, 360.0, 239.5], 1.0, 6.0, "press", 5)
    mock = run_node(monkeypatch, pose_fit.main, [
        camera_info_event(), depth_event(block_on_table_depth(), 5), targets_event(target, 6),
    ])
    pose = TargetPose.from_arrow(mock.outputs["target_pose"][0])
    np.testing.assert_allclose(pose.position, [0.5, 0.0, 0.1], atol=2e-3)
    assert pose.normal[2] > 0.999 and len(pose.path) >= 6 * 3 and pose.force_n == 6.0


@pytest.mark.parametrize("depth, stroke, message", [
    ("holes", [], "no valid depth"),
    ("block", [319.5, 239.5, 630.0, 239.5], "leaves the body"),
])
def test_pose_fit_sends_no_target_on_bad_data(monkeypatch, depth, stroke, message):
    from tuina.nodes import pose_fit

    image = block_on_table_depth()
    if depth == "holes":
        image[:] = np.nan
    target = GroundedTarget("ST36", "Zusanli", 1, [300, 220, 340, 260], [319.5, 239.5],
                            stroke, 1.0, 6.0, "press", 5)
    mock = run_node(monkeypatch, pose_fit.main, [
        camera_info_event(), depth_event(image, 5), targets_event(target, 6),
    ])
    assert "target_pose" not in mock.outputs
    event = SessionEvent.from_arrow(mock.outputs["events"][0])
    assert event.kind == "error" and message in event.detail


@pytest.mark.parametrize("centre, model, rmse, expect", [
    ([319.5, 239.5], [0.5, 0.0, 0.1], 0.003, "depth"),  # agrees with the model
    ([319.5, 239.5], [0.5, 0.025, 0.1], 0.003, "model"),  # depth 25 mm off: the model
    ([319.5, 239.5], [0.5, 0.025, 0.1], 0.012, "refused: registration fits 12.0 mm"),
    ([700.0, 239.5], [0.5, 0.0, 0.1], 0.003, "refused: outside the camera's 640x480 image"),
])
def test_pose_fit_trusts_depth_uses_a_well_registered_model_or_refuses(monkeypatch, centre,
                                                                       model, rmse, expect):
    from tuina.nodes import pose_fit

    target = GroundedTarget("ST36", "Zusanli", 1, [300, 220, 340, 260], centre, [], 1.0, 6.0,
                            "press", 5, model, [0.0, 0.0, 1.0], rmse)
    mock = run_node(monkeypatch, pose_fit.main, [
        camera_info_event(), depth_event(block_on_table_depth(), 5), targets_event(target, 6),
    ])
    if expect.startswith("refused"):
        assert "target_pose" not in mock.outputs
        event = SessionEvent.from_arrow(mock.outputs["events"][0])
        assert event.kind == "error" and expect.removeprefix("refused: ") in event.detail
        return
    pose = TargetPose.from_arrow(mock.outputs["target_pose"][0])
    assert pose.surface == expect and pose.view_angle_deg < 10
    np.testing.assert_allclose(pose.position, model if expect == "model" else [0.5, 0, 0.1],
                               atol=2e-3)


def instruction_event(text: str, stroke: list[float], stamp: int = 1) -> dict:
    return {"type": "INPUT", "id": "instruction", "value": Instruction(text, stroke).to_arrow(),
            "metadata": meta(stamp)}


def test_grounding_refuses_a_stroke_outside_the_image(monkeypatch):
    from tuina.nodes import grounding

    mock = run_node(monkeypatch, grounding.main, [
        camera_info_event(), instruction_event("stroke here", [100.0, 100.0, 900.0, 100.0]),
        depth_event(block_on_table_depth(), 2),
    ])
    assert "targets" not in mock.outputs
    detail = SessionEvent.from_arrow(mock.outputs["events"][0]).detail
    assert "outside the 640x480 image" in detail


def test_grounding_passes_a_drawn_stroke_without_an_acupoint_name(monkeypatch):
    from tuina.nodes import grounding

    mock = run_node(monkeypatch, grounding.main, [
        camera_info_event(), instruction_event("stroke here gently", [300.0, 240, 360, 240]),
        depth_event(block_on_table_depth(), 2),
    ])
    target = decode_targets(mock.outputs["targets"][0])[0]
    assert (target.code, target.technique, target.force_n) == ("STROKE", "stroke", 4.0)
    assert target.center_px == [300.0, 240.0] and len(target.stroke_px) == 4


def sim_camera_info_event(stamp: int = 0) -> dict:
    from tuina.messages import CameraInfo

    info = CameraInfo(640, 480, K[0, 0], K[1, 1], K[0, 2], K[1, 2], [0.0] * 5,
                      SIM_CAM_T.ravel().tolist(), 0.001)
    return {"type": "INPUT", "id": "camera_info", "value": info.to_arrow(),
            "metadata": meta(stamp)}


def test_grounding_atlas_finds_st36_on_a_body_off_its_expected_pose(monkeypatch):
    from tuina.nodes import grounding
    from tuina.operators.phantom import ATLAS, placement

    body_T = placement((0.58, 0.18, 0.0), 98.0)  # expected: (0.55, 0.2, 0) at 90 deg
    cam_T = SIM_CAM_T
    depth = phantom_depth(body_T)
    info_event = sim_camera_info_event()
    mock = run_node(monkeypatch, grounding.main, [
        info_event,
        {"type": "INPUT", "id": "instruction",
         "value": Instruction("press Zusanli, firm").to_arrow(), "metadata": meta(1)},
        depth_event(depth, 2),
    ])
    target = decode_targets(mock.outputs["targets"][0])[0]
    st36 = next(a for a in ATLAS if a.code == "ST36")
    p = (body_T[:3, :3] @ st36.position + body_T[:3, 3] - cam_T[:3, 3]) @ cam_T[:3, :3]
    expected = (K @ p)[:2] / p[2]
    assert target.code == "ST36" and target.force_n == 9.0
    np.testing.assert_allclose(target.center_px, expected, atol=3.0)
    x1, y1, x2, y2 = target.box
    assert x1 < expected[0] < x2 and y1 < expected[1] < y2


def test_grounding_finds_a_back_point_on_a_body_lying_prone_and_refuses_it_supine(
        monkeypatch, capfd):
    from tuina.nodes import grounding
    from tuina.operators.phantom import ATLAS, placement, right_side

    body_T = placement((0.53, 0.23, 0.0), 84.0)  # expected: (0.55, 0.2, 0) at 90 deg
    depth = phantom_depth(body_T)

    def events() -> list[dict]:
        return [sim_camera_info_event(),
                {"type": "INPUT", "id": "instruction",
                 "value": Instruction("按肾俞").to_arrow(), "metadata": meta(1)},
                depth_event(depth, 2)]

    monkeypatch.setenv("BODY_POSTURE", "prone")
    mock = run_node(monkeypatch, grounding.main, events())
    target = decode_targets(mock.outputs["targets"][0])[0]
    # no side named: the one facing the arm, prone the person's right (+y)
    bl23 = right_side(next(a for a in ATLAS if a.code == "BL23"))
    truth = body_T[:3, :3] @ bl23.position + body_T[:3, 3]
    p = (truth - SIM_CAM_T[:3, 3]) @ SIM_CAM_T[:3, :3]
    assert target.code == "BL23-R" and target.name == "Shenshu"
    np.testing.assert_allclose(target.center_px, (K @ p)[:2] / p[2], atol=3.0)
    assert np.linalg.norm(np.asarray(target.model_point) - truth) < 0.005
    monkeypatch.setenv("BODY_POSTURE", "supine")
    capfd.readouterr()
    mock = run_node(monkeypatch, grounding.main, events())
    assert not mock.outputs.get("targets")
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "BL23 (Shenshu) is reached prone" in err


def test_stroke_the_bladder_line_draws_the_path_from_bl13_down_to_bl25(monkeypatch):
    from tuina.nodes import grounding
    from tuina.operators.phantom import ATLAS, placement

    body_T = placement((0.55, -0.1, 0.0), 90.0)  # the back whole in the camera's view
    monkeypatch.setenv("BODY_POSTURE", "prone")
    monkeypatch.setenv("BODY_POSITION", "0.55,-0.1,0.0")
    monkeypatch.setenv("UNNAMED_SIDE", "left")
    mock = run_node(monkeypatch, grounding.main, [
        sim_camera_info_event(),
        {"type": "INPUT", "id": "instruction",
         "value": Instruction("stroke the bladder line lightly").to_arrow(), "metadata": meta(1)},
        depth_event(phantom_depth(body_T), 2),
    ])
    target = decode_targets(mock.outputs["targets"][0])[0]
    assert target.code == "BL13" and target.technique == "stroke" and target.force_n == 4.0

    def pixel(code: str) -> np.ndarray:
        a = next(p for p in ATLAS if p.code == code)
        q = (body_T[:3, :3] @ a.position + body_T[:3, 3] - SIM_CAM_T[:3, 3]) @ SIM_CAM_T[:3, :3]
        return (K @ q)[:2] / q[2]

    path = np.asarray(target.stroke_px).reshape(-1, 2)
    np.testing.assert_allclose(path[0], pixel("BL13"), atol=3.0)
    np.testing.assert_allclose(path[-1], pixel("BL25"), atol=8.0)  # a straight chord


def trajectory_event(stamp: int) -> dict:
    traj = Trajectory(stamp, [0.0, 1.0, 2.0], [0.4, 0.0, 0.2] * 3, [1.0, 0, 0, 0] * 3,
                      [0.0, 0.0, 0.0], ["approach"] * 3, [0, 0, 1.0] * 3, [0.0] * 21, "ST36",
                      0)
    return {"type": "INPUT", "id": "trajectory", "value": traj.to_arrow(),
            "metadata": meta(stamp)}


def state_event(stamp: int, tool=(0.4, 0.0, 0.2), wrench=(0, 0, 0, 0, 0, 0)) -> dict:
    state = RobotState([0.0] * 7, [0.0] * 7, list(tool), [1.0, 0, 0, 0], list(wrench), "ok")
    return {"type": "INPUT", "id": "robot_state", "value": state.to_arrow(),
            "metadata": meta(stamp)}


def test_force_controller_commands_follow_the_trajectory_then_finish(monkeypatch):
    from tuina.nodes import force_controller

    events = [state_event(0), trajectory_event(0)]
    events += [state_event(int(k * 1e7)) for k in range(1, 260)]
    mock = run_node(monkeypatch, force_controller.main, events)
    cmds = [Command.from_arrow(c) for c in mock.outputs["command"]]
    assert len(cmds) == 259
    assert cmds[0].mode == "track" and cmds[-1].mode == "hold"
    np.testing.assert_allclose(cmds[0].position, [0.4, 0.0, 0.2], atol=1e-6)
    kinds = [SessionEvent.from_arrow(e).kind for e in mock.outputs["events"]]
    assert kinds == ["phase", "done"]


def test_force_controller_drives_a_baxter_by_joint_velocities_from_joint_torques(monkeypatch):
    from tuina.nodes import force_controller
    from tuina.operators.arms import arm_kinematics

    arm = arm_kinematics("baxter_left", 0.05)
    q = arm.posture
    tool = arm.forward(q)
    quat = Rotation.from_matrix(tool.rotation).as_quat().tolist()
    goal = (tool.translation + [0.03, 0.0, 0.0]).tolist()
    traj = Trajectory(0, [0.0, 1.0], tool.translation.tolist() + goal, quat * 2, [0.0, 0.0],
                      ["approach"] * 2, [0, 0, 1.0] * 2, list(q) * 2, "ST36", 0)
    # holding still, pushing nothing: the joints measure exactly the gravity torques
    state = RobotState(list(q), [0.0] * 7, tool.translation.tolist(), quat, [float("nan")] * 6,
                       "ok", arm.gravity_torques(q).tolist())
    events = [{"type": "INPUT", "id": "robot_state", "value": state.to_arrow(),
               "metadata": meta(k * 10_000_000)} for k in range(60)]
    events.insert(1, {"type": "INPUT", "id": "trajectory", "value": traj.to_arrow(),
                      "metadata": meta(0)})
    for key, value in dict(OUTPUT="joint_velocity", FORCE_SOURCE="joint_torques",
                           ROBOT="baxter_left", TOOL_LENGTH_M="0.05").items():
        monkeypatch.setenv(key, value)
    mock = run_node(monkeypatch, force_controller.main, events)
    cmds = [Command.from_arrow(c) for c in mock.outputs["command"]]
    assert all(c.mode == "track" and abs(c.force_measured_n) < 1e-6 for c in cmds)
    dq = np.asarray(cmds[30].joint_velocities)
    assert dq.shape == (7,) and np.all(np.abs(dq) <= arm.velocity_limit)
    # the joints move the tool along +x, where the trajectory goes
    v = arm.jacobian(q) @ dq
    assert v[0] > 0.01 and abs(v[1]) < 0.2 * v[0] and abs(v[2]) < 0.2 * v[0]


def test_force_controller_refuses_a_nan_trajectory(monkeypatch, capsys):
    from tuina.nodes import force_controller

    ms = 10_000_000
    bad = Trajectory(0, [0.0, 1.0], [0.4, 0.0, 0.2, float("nan"), 0.0, 0.2], [1.0, 0, 0, 0] * 2,
                     [0.0, 0.0], ["approach"] * 2, [0, 0, 1.0] * 2, [0.0] * 14, "ST36", 0)
    bad_event = {"type": "INPUT", "id": "trajectory", "value": bad.to_arrow(),
                 "metadata": meta(0)}
    # alone: nothing is ever commanded
    mock = run_node(monkeypatch, force_controller.main,
                    [state_event(0), bad_event] + [state_event(k * ms) for k in range(1, 30)])
    assert "command" not in mock.outputs
    errors = [SessionEvent.from_arrow(e).detail for e in mock.outputs["events"]]
    assert errors == ["force-controller: trajectory positions contain NaN or infinity"]
    assert "NaN" in capsys.readouterr().out
    # in the middle of a massage: the massage stops and the tool backs off
    events = [state_event(0), trajectory_event(0)]
    events += [state_event(k * ms) for k in range(1, 20)] + [bad_event]
    events += [state_event(k * ms) for k in range(20, 200)]
    mock = run_node(monkeypatch, force_controller.main, events)
    cmds = [Command.from_arrow(c) for c in mock.outputs["command"]]
    assert cmds[-1].phase == "abort" and cmds[-1].position[2] > cmds[18].position[2] + 0.03
    assert all(np.all(np.isfinite(c.position)) for c in cmds)


def test_force_controller_never_commands_without_a_trajectory(monkeypatch):
    from tuina.nodes import force_controller

    mock = run_node(monkeypatch, force_controller.main,
                    [state_event(int(k * 1e7)) for k in range(20)])
    assert "command" not in mock.outputs


def test_bad_env_exits_with_one_line(monkeypatch, capsys):
    from tuina.nodes import planner

    monkeypatch.setenv("MAX_SPEED", "fast")
    with pytest.raises(SystemExit) as err:
        planner.main()
    assert err.value.code == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "MAX_SPEED" in line


def test_unreachable_robot_fails_fast_with_one_line():
    from tuina.nodes.franka import connect

    start = time.monotonic()
    with pytest.raises(TimeoutError) as err:
        connect("127.0.0.250", 1.5, realtime=False)
    assert time.monotonic() - start < 2.5
    assert "127.0.0.250" in str(err.value) and "FRANKA_IP" in str(err.value)


def target_pose_event(stamp: int, source_stamp: int) -> dict:
    pose = TargetPose("ST36", [0.4, 0.0, 0.1], [1.0, 0, 0, 0], [0, 0, 1.0], [], 6.0, "press",
                      source_stamp)
    return {"type": "INPUT", "id": "target_pose", "value": pose.to_arrow(),
            "metadata": meta(stamp)}


def test_icp_tracker_follows_then_loses_the_body_safely(monkeypatch):
    from tuina.nodes import icp_tracker
    from tuina.operators.phantom import placement

    monkeypatch.setenv("ROBOT", "none")  # no arm in these frames
    frame = 33_333_333
    body = placement((0.55, 0.2, 0.0), 90.0)

    def moved(dx: float) -> np.ndarray:
        return make_transform(np.eye(3), np.array([dx, 0.0, 0.0])) @ body

    nan = np.full((480, 640), np.nan, np.float32)
    mock = run_node(monkeypatch, icp_tracker.main, [
        sim_camera_info_event(),
        depth_event(phantom_depth(body), 0),
        target_pose_event(1, 0),
        depth_event(phantom_depth(moved(0.004)), 3 * frame),
        depth_event(nan, 4 * frame),  # all-NaN depth: a status, no update
        depth_event(phantom_depth(moved(0.03)), 5 * frame),  # 26 mm in a frame: a jerk
        depth_event(phantom_depth(moved(0.03)), 6 * frame),
    ])
    motions = [BodyMotion.from_arrow(m) for m in mock.outputs["body_motion"]]
    assert [m.status for m in motions] == ["no_reference", "ok", "no_cloud", "large_motion",
                                           "lost"]
    assert motions[1].updated and abs(motions[1].translation[0] - 0.004) < 5e-4
    assert motions[1].reference_stamp_ns == 0
    for m in motions[2:]:  # the last good motion stays; nothing new is published
        assert not m.updated and m.translation == motions[1].translation
    events = [SessionEvent.from_arrow(e) for e in mock.outputs["events"]]
    assert [e.kind for e in events] == ["reground"]


def test_grounding_finds_the_target_again_after_a_reground_request(monkeypatch):
    from tuina.nodes import grounding
    from tuina.operators.phantom import placement

    body = placement((0.55, 0.2, 0.0), 90.0)
    moved = make_transform(np.eye(3), np.array([0.0, 0.02, 0.0])) @ body
    second = 1_000_000_000
    reground = {"type": "INPUT", "id": "reground", "metadata": meta(2 * second),
                "value": SessionEvent("reground", "icp-tracker: large_motion").to_arrow()}
    mock = run_node(monkeypatch, grounding.main, [
        sim_camera_info_event(),
        {"type": "INPUT", "id": "instruction",
         "value": Instruction("press Zusanli").to_arrow(), "metadata": meta(1)},
        depth_event(phantom_depth(body), second),
        reground,
        depth_event(phantom_depth(moved), int(2.5 * second)),  # within REGROUND_DELAY_S
        depth_event(phantom_depth(moved), int(3.1 * second)),
    ])
    first, again = (decode_targets(t)[0] for t in mock.outputs["targets"])
    assert first.source_stamp_ns == second and again.source_stamp_ns == int(3.1 * second)
    # the body moved 2 cm towards the camera's -x image axis: the box followed it
    assert again.center_px[0] < first.center_px[0] - 5


def motion_event(stamp: int, status: str, reference: int, dx: float = 0.0) -> dict:
    bm = BodyMotion(np.eye(3).ravel().tolist(), [dx, 0.0, 0.0], 1.0, 0.001, True, status,
                    reference, 4000, 1.0, [0.0] * 6)
    return {"type": "INPUT", "id": "body_motion", "value": bm.to_arrow(),
            "metadata": meta(stamp)}


def test_force_controller_backs_off_when_the_track_is_lost(monkeypatch):
    from tuina.nodes import force_controller

    ms = 10_000_000
    traj = Trajectory(0, [0.0, 5.0, 10.0], [0.4, 0.0, 0.2] * 3, [1.0, 0, 0, 0] * 3,
                      [0.0] * 3, ["approach"] * 3, [0, 0, 1.0] * 3, [0.0] * 21, "ST36", 7)
    events = [state_event(0), {"type": "INPUT", "id": "trajectory", "value": traj.to_arrow(),
                               "metadata": meta(0)}]
    events += [state_event(k * ms) for k in range(1, 20)]
    # a motion relative to an older reference belongs to an older plan: ignored
    events += [motion_event(20 * ms, "large_motion", 3)]
    events += [state_event(k * ms) for k in range(20, 40)]
    events += [motion_event(40 * ms, "ok", 7, 0.01)]
    events += [state_event(k * ms) for k in range(40, 60)]
    events += [motion_event(60 * ms, "large_motion", 7)]
    events += [state_event(k * ms) for k in range(60, 200)]
    mock = run_node(monkeypatch, force_controller.main, events)
    cmds = [Command.from_arrow(c) for c in mock.outputs["command"]]
    phases = [c.phase for c in cmds]
    assert "abort" not in phases[:59] and phases[-1] == "abort"  # cmds[k]: state k + 1
    assert cmds[57].position[0] > 0.4  # followed the good motion
    backing = [c.position[2] for c in cmds[59:]]
    assert np.all(np.diff(backing) >= -1e-12) and backing[-1] > 0.2 + 0.03
    kinds = [SessionEvent.from_arrow(e).kind for e in mock.outputs["events"]]
    assert "abort" in kinds and "done" not in kinds


def test_supervised_events_tick_on_an_absolute_schedule_and_go_on_after_the_end():
    from tuina.runtime import GONE, supervised_events

    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    script = [("wait", 0.0042), ("input", "command"), ("wait", 1.0), ("stop", None)]

    class FakeNode:
        def next(self, timeout: float):
            kind, arg = script[0]
            if kind == "wait":
                step = min(timeout, arg)
                clock.now += step + 0.0003  # every wake-up is a little late
                script[0] = ("wait", arg - step)
                if script[0][1] <= 1e-12:
                    script.pop(0)
                return {"type": "ERROR", "error": "Timeout event stream error: timed out"}
            if kind == "gone":
                return None
            script.pop(0)
            if kind == "input":
                return {"type": "INPUT", "id": arg, "metadata": {}, "value": None}
            return {"type": "STOP", "id": ""}

    def sleep(seconds: float) -> None:
        clock.now += seconds + 0.0003

    script.append(("gone", None))
    seen, kinds = [], []
    for e in supervised_events(FakeNode(), 0.01, clock=clock, sleep=sleep):
        kinds.append(e["type"])
        if clock.now > 1.5:
            break
        if e["type"] == "INPUT":
            seen.append((e["id"], round(clock.now, 4)))
    # the end of the graph is said once each, and the ticks go on after it
    assert kinds.count("STOP") == 1 and kinds.count(GONE) == 1
    assert kinds[-1] == "INPUT" and clock.now > 1.5
    seen = [(name, t) for name, t in seen if t <= 1.0043]
    ticks = [t for name, t in seen if name == "tick"]
    assert ("command", 0.0045) in seen
    # lateness does not accumulate: each tick is within one wake-up delay of its deadline
    deadlines = 0.01 * np.arange(1, len(ticks) + 1)
    assert len(ticks) >= 95 and np.all(np.abs(np.asarray(ticks) - deadlines) < 0.0007)


@pytest.mark.parametrize("surface_z, expect", [
    (None, "no depth frame yet"),  # nothing to check the arm's way against: no motion
    (0.1, ""),  # the surface the target lies on: the contact, clear
    (0.25, "would come within"),  # something seen above the target, in the arm's way
])
def test_the_planner_plans_only_a_way_clear_of_what_the_camera_sees(monkeypatch, surface_z,
                                                                     expect):
    from tuina.nodes import planner

    seen = [] if surface_z is None else [camera_info_event(), depth_event(
        plane_depth(surface_z), 1)]
    mock = run_node(monkeypatch, planner.main,
                    [state_event(0), *seen, target_pose_event(2, 1), state_event(3)])
    errors = [SessionEvent.from_arrow(e).detail for e in mock.outputs.get("events", [])]
    if expect:
        assert "trajectory" not in mock.outputs
        assert len(errors) == 1 and expect in errors[0] and errors[0].startswith("planner: ")
    else:
        assert errors == [] and len(mock.outputs["trajectory"]) == 1


def test_one_raster_gives_the_renderers_own_colour_and_depth():
    """The world's frame reads colour and depth from one drawing of the scene: the same pixels
    and depths as mujoco.Renderer's two passes, so the cheaper frame changes nothing seen."""
    from tuina.sim.world import MassageWorld, WorldConfig, rgb_and_depth

    def two_passes(world) -> tuple[np.ndarray, np.ndarray]:
        r = world.renderer
        r.update_scene(world._render_data, camera="d455")
        colour = r.render().copy()
        r.enable_depth_rendering()
        r.update_scene(world._render_data, camera="d455")
        depth = r.render().copy()
        r.disable_depth_rendering()
        return colour, depth

    with MassageWorld(WorldConfig(width=320, height=240)) as world:
        frame = world.render(rgb=True)
        colour, depth = two_passes(world)
        assert np.array_equal(frame.rgb, colour) and np.array_equal(frame.depth, depth)
        assert 0.3 < float(np.median(depth)) < 1.5 and colour.std() > 10  # a scene, not blank
        # and straight after a depth-only frame (the renderer's mode put back)
        world.render(rgb=False)
        again = rgb_and_depth(world.renderer, world.model, world._render_data, "d455")
        colour, depth = two_passes(world)
        assert np.array_equal(again[0], colour) and np.array_equal(again[1], depth)
