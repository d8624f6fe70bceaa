import json
import math

import numpy as np
import pyarrow as pa
import pytest

from tuina.messages import (
    STREAMS,
    BodyMotion,
    CameraInfo,
    Command,
    GroundedTarget,
    GroundTruth,
    Header,
    Instruction,
    MessageError,
    RobotState,
    SessionEvent,
    TargetPose,
    Trajectory,
    decode_depth,
    decode_rgb,
    decode_targets,
    encode_depth,
    encode_rgb,
    encode_targets,
)

SAMPLES = [
    CameraInfo(640, 480, 433.0, 433.0, 319.5, 239.5, [0.0] * 5, np.eye(4).ravel().tolist(),
               0.001),
    Instruction("press ST36", [10.0, 20.0, 30.0, 40.0]),
    TargetPose("ST36", [0.4, -0.3, 0.1], [1.0, 0, 0, 0], [0, 0, 1.0], [0.4, -0.3, 0.1] * 3,
               6.0, "press", 123, "model", 71.5),
    BodyMotion(np.eye(3).ravel().tolist(), [0.01, 0, 0], 0.9, 0.001, True, "ok", 7, 5000, 0.9,
               [0.01, 0, 0, 0, 0, 0.1]),
    Trajectory(5, [0.0, 0.1], [0.0] * 6, [0, 0, 0, 1.0] * 2, [0.0, 6.0], ["approach", "press"],
               [0, 0, 1.0] * 2, [0.0] * 14, "ST36", 3),
    Command([0.4, 0, 0.2], [1.0, 0, 0, 0], [0.0] * 6, "track", "press", 6.0, 5.5),
    RobotState([0.0] * 7, [0.0] * 7, [0.4, 0, 0.2], [1.0, 0, 0, 0], [0, 0, -6.0, 0, 0, 0], "ok"),
    GroundTruth([0.5, 0.2, 0], [0, 0, 0, 1.0], ["ST36"], [0.4, -0.3, 0.1], [0, 0, 1.0],
                [0, 0, -6.0], [0.4, -0.3, 0.1], 6.2),
    SessionEvent("done", "ok"),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_struct_messages_round_trip(message):
    array = message.to_arrow()
    assert isinstance(array, pa.StructArray)
    assert type(message).from_arrow(array) == message


def test_targets_round_trip_many_rows():
    t = GroundedTarget("ST36", "Zusanli", 1, [1, 2, 3, 4], [2, 3], [], 0.9, 6.0, "press", 7,
                       [0.4, -0.3, 0.1], [0.0, 0.0, 1.0], 0.002)
    u = GroundedTarget("SP6", "Sanyinjiao", 4, [5, 6, 7, 8], [6, 7], [1, 2, 3, 4], 0.8, 4.0,
                       "stroke", 7)  # a box backend: pixels only
    t2, u2 = decode_targets(encode_targets([t, u]))
    assert t2 == t
    assert u2.model_point == [] and np.isnan(u2.model_rmse_m)


def test_wrong_payload_type_is_rejected():
    with pytest.raises(MessageError, match="does not match the contract"):
        Command.from_arrow(SessionEvent("done", "ok").to_arrow())


def test_rgb_round_trip_and_metadata():
    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    array, meta = encode_rgb(img, Header(5, 1, "camera_color_optical"))
    assert meta["stamp_ns"] == 5 and meta["seq"] == 1 and meta["width"] == 64
    np.testing.assert_array_equal(decode_rgb(array, meta), img)


def test_depth_round_trip_quantises_and_keeps_holes():
    depth = np.full((4, 5), 0.8, np.float32)
    depth[1, 2] = np.nan
    array, meta = encode_depth(depth, Header(1, 0, "camera_color_optical"), 0.001)
    assert array.type == pa.uint16()
    back = decode_depth(array, meta)
    assert np.isnan(back[1, 2])
    np.testing.assert_allclose(back[np.isfinite(back)], 0.8, atol=5e-4)


def test_header_requires_contract_keys():
    with pytest.raises(MessageError, match="stamp_ns"):
        Header.from_metadata({"seq": 1, "frame_id": "base"})


def test_every_stream_documented():
    names = {s.name for s in STREAMS}
    assert {"rgb", "depth", "camera_info", "instruction", "targets", "target_pose",
            "body_motion", "trajectory", "command", "robot_state", "ground_truth"} <= names


def test_summaries_are_strict_json_with_null_for_what_was_not_measured():
    from tuina import jsontext

    summary = {"force_n": np.float64(6.1), "stroke_n": float("nan"), "release_s": math.inf,
               "rows": [{"x": np.float32("nan")}], "released_t": None, "ok": True}
    text = jsontext.dumps(summary)
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)
    assert back["force_n"] == 6.1 and back["stroke_n"] is None and back["rows"][0]["x"] is None
    figures = jsontext.figures(back, absent=("released_t",))
    assert math.isnan(figures["stroke_n"]) and figures["released_t"] is None
    assert figures["ok"] is True
