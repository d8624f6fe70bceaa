"""``tuina export``: a recording to MCAP and to rerun, read back with the real readers."""

import json
from pathlib import Path

import numpy as np
import pytest

from tuina.cli import main as tuina
from tuina.messages import (
    CameraInfo,
    Command,
    GroundedTarget,
    Header,
    SessionEvent,
    TargetPose,
    Trajectory,
    encode_depth,
    encode_rgb,
    encode_targets,
)
from tuina.recording import Recorder, read_manifest, read_topic
from tuina.recording.export import CLOUD_STRIDE, depth_cloud
from tuina.recording.messages import Recorded

from .test_recording import state

W, H = 64, 48
FRAMES, STATES = 6, 40
K = np.array([[60.0, 0, 32.0], [0, 60.0, 24.0], [0, 0, 1]])
CAMERA = np.array([[1.0, 0, 0, 0.5], [0, -1.0, 0, 0.0], [0, 0, -1.0, 1.0], [0, 0, 0, 1]])


def image(k: int) -> np.ndarray:
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = np.arange(W, dtype=np.uint8)[None, :] * 3
    rgb[:, k * 5:k * 5 + 4, 1] = 255
    return rgb


def depth(k: int) -> np.ndarray:
    d = np.full((H, W), 0.8, np.float32) + np.linspace(0, 0.05, W)[None, :] + k * 1e-3
    d[:4, :4] = np.nan  # no data there
    return d


@pytest.fixture
def recording(tmp_path) -> Path:
    """A small recording of the topics a sim session records, stamps interleaved."""
    folder = tmp_path / "rec"
    rec = Recorder(folder, {"graph": "nodes:\n  - id: robot\n    path: tuina-franka\n",
                            "graph_file": "/graphs/sim.yml", "versions": {"numpy": "2.4.6"}})
    info = CameraInfo(W, H, 60.0, 60.0, 32.0, 24.0, [0.0] * 5, CAMERA.ravel().tolist(), 1e-4)
    for k in range(FRAMES):
        stamp = 1_000_000_000 + k * 66_000_000
        rec.add("camera/camera_info", info.to_arrow(), Header(stamp, k, "camera").to_metadata())
        payload, meta = encode_rgb(image(k), Header(stamp, k, "camera"))
        rec.add("camera/rgb", payload, meta)
        payload, meta = encode_depth(depth(k), Header(stamp, k, "camera"), depth_scale=1e-4)
        rec.add("camera/depth", payload, meta)
    target = GroundedTarget("ST36", "Zusanli", 36, [10.0, 12.0, 20.0, 22.0], [15.0, 17.0], [],
                            0.9, 6.0, "press", 1_000_000_000)
    rec.add("grounding/targets", encode_targets([target, target]),
            Header(1_050_000_000, 0, "camera").to_metadata())
    rec.add("pose-fit/target_pose", TargetPose(
        "ST36", [0.5, 0.0, 0.2], [1.0, 0, 0, 0], [0, 0, 1.0], [], 6.0, "press", 1).to_arrow(),
        Header(1_060_000_000, 0, "base").to_metadata())
    rec.add("planner/trajectory", Trajectory(
        1, [0.0, 1.0, 2.0], [0.5, 0, 0.3, 0.5, 0, 0.25, 0.5, 0, 0.2], [0, 0, 0, 1.0] * 3,
        [0.0, 0.0, 6.0], ["approach", "contact", "press"], [0, 0, 1.0] * 3, [0.0] * 21,
        "ST36", 1).to_arrow(), Header(1_070_000_000, 0, "base").to_metadata())
    for k in range(STATES):
        stamp = 1_000_000_000 + k * 10_000_000
        rec.add("robot/robot_state", state(k).to_arrow(), Header(stamp, k, "base").to_metadata())
        rec.add("force-controller/command", Command(
            [0.5, 0, 0.2], [1.0, 0, 0, 0], [0.0] * 6, "track", "press", 6.0,
            float("nan") if k == 3 else 5.5).to_arrow(),
            Header(stamp + 1_000_000, k, "base").to_metadata())
    rec.add("session/events", SessionEvent("phase", "press").to_arrow(),
            Header(1_100_000_000, 0, "-").to_metadata())
    rec.add("session/events", SessionEvent("done", "ok").to_arrow(),
            Header(1_390_000_000, 1, "-").to_metadata())
    rec.close()
    return folder


def test_mcap_export_reads_back_topic_for_topic_with_the_recorded_values(recording, tmp_path):
    from mcap.reader import make_reader
    from mcap_protobuf.decoder import DecoderFactory

    out = tmp_path / "session.mcap"
    assert tuina(["export", str(recording), "--mcap", str(out)]) == 0
    manifest = read_manifest(recording)
    with out.open("rb") as f:
        reader, protobuf = make_reader(f), DecoderFactory()
        summary = reader.get_summary()
        topics = {c.id: c.topic for c in summary.channels.values()}
        counts = {topics[c]: n for c, n in summary.statistics.channel_message_counts.items()}
        metadata = {m.name: m.metadata for m in reader.iter_metadata()}
        times: dict[str, list[int]] = {}
        decoded: dict[str, list] = {}
        for schema, channel, message in reader.iter_messages():
            times.setdefault(channel.topic, []).append(message.log_time)
            assert channel.message_encoding in ("protobuf", "json"), channel
            decoded.setdefault(channel.topic, []).append(
                protobuf.decoder_for("protobuf", schema)(message.data)
                if channel.message_encoding == "protobuf" else json.loads(message.data))
    for topic, entry in manifest["topics"].items():  # every topic, whole, at its event times
        stamps = read_topic(recording, topic).column("stamp_ns").to_pylist()
        assert counts["/" + topic] == entry["count"] == len(stamps), topic
        assert (min(times["/" + topic]), max(times["/" + topic])) == (min(stamps), max(stamps))
    # the views beside them: one cloud per depth frame, the camera's transform, the path
    assert counts["/camera/depth/points"] == counts["/tf"] == FRAMES
    assert counts["/planner/trajectory/path"] == 1
    assert "tuina-franka" in metadata["graph"]["yaml"]
    assert metadata["versions"]["numpy"] == "2.4.6"
    rgb = decoded["/camera/rgb"][4]  # foxglove.RawImage, as recorded
    assert (rgb.width, rgb.height, rgb.encoding) == (W, H, "rgb8")
    np.testing.assert_array_equal(np.frombuffer(rgb.data, np.uint8).reshape(H, W, 3), image(4))
    raw = np.frombuffer(decoded["/camera/depth"][2].data, "<u2").reshape(H, W)
    np.testing.assert_allclose(raw * 1e-4, np.nan_to_num(depth(2)), atol=1e-4)
    cloud = decoded["/camera/depth/points"][2]  # foxglove.PointCloud in the camera frame
    points = np.frombuffer(cloud.data, "<f4").reshape(-1, 3)
    expected = depth_cloud(recorded(recording, "camera/depth", 2),
                           CameraInfo(W, H, 60.0, 60.0, 32.0, 24.0, [0.0] * 5,
                                      CAMERA.ravel().tolist(), 1e-4))
    assert len(points) == len(expected) == (H // CLOUD_STRIDE) * (W // CLOUD_STRIDE) - 1
    np.testing.assert_allclose(points, expected, atol=1e-6)
    tf = decoded["/tf"][0]
    assert (tf.parent_frame_id, tf.child_frame_id) == ("base", "camera")
    assert (tf.translation.x, tf.translation.y, tf.translation.z) == (0.5, 0.0, 1.0)
    calibration = decoded["/camera/camera_info"][0]
    np.testing.assert_allclose(np.reshape(calibration.K, (3, 3)), K)
    state_json = decoded["/robot/robot_state"][12]
    assert state_json["q"] == state(12).q and state_json["_metadata"]["frame_id"] == "base"
    commands = decoded["/force-controller/command"]
    assert commands[3]["force_measured_n"] is None  # NaN is JSON's null
    assert len(decoded["/grounding/targets"][0]["items"]) == 2


def recorded(folder: Path, topic: str, row: int) -> Recorded:
    """One recorded message as the export reads it."""
    table = read_topic(folder, topic)
    stamp = table.column("stamp_ns")[row].as_py()
    return Recorded(topic, stamp, table.column("payload")[row].values,
                    {**json.loads(table.column("metadata")[row].as_py()), "stamp_ns": stamp})


def rrd_rows(path: Path) -> dict[str, int]:
    """Rows per entity of an .rrd, read with rerun's own reader."""
    from rerun.chunk import RrdReader

    rows: dict[str, int] = {}
    for chunk in RrdReader(path).store().stream():
        if not chunk.is_static:
            rows[str(chunk.entity_path)] = rows.get(str(chunk.entity_path), 0) + \
                chunk.num_rows
    return rows


def test_rrd_export_holds_the_viewers_entities(recording, tmp_path):
    out = tmp_path / "session.rrd"
    assert tuina(["export", str(recording), "--rrd", str(out)]) == 0
    rows = rrd_rows(out)
    assert rows["/force/measured"] == rows["/force/target"] == STATES
    assert rows["/world/camera"] == 1  # the camera did not move: logged once
    # frames 66 ms apart, images at most 10 Hz: the 1st, 3rd and 5th, the others dropped
    assert rows["/world/camera/rgb"] == 3
    assert rows["/world/camera/depth"] == rows["/world/body"] == 1  # at 2 Hz
    assert rows["/world/plan"] == 1
    assert rows["/world/targets"] == 1 and rows["/world/camera/rgb/boxes"] == 1
    # 40 states 10 ms apart: the arm and the tool at 30 Hz, the whole path once
    assert rows["/world/arm"] == rows["/world/tool"] == 10 and rows["/world/tool_path"] == 1
    assert rows["/log/events"] == 1 and rows["/log/phase"] == 1
    assert not list(tmp_path.glob("*.partial"))


def test_export_refuses_bad_input_with_one_line_and_writes_nothing(recording, tmp_path, capsys):
    assert tuina(["export", str(tmp_path / "nowhere"), "--mcap", str(tmp_path / "a.mcap")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no recording" in err[0]
    assert tuina(["export", str(recording)]) == 2
    assert "pass --mcap OUT" in capsys.readouterr().err
    assert tuina(["export", str(recording), "--mcap", str(tmp_path / "no" / "a.mcap")]) == 2
    assert "create it" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.mcap*"))


def test_a_failed_export_leaves_no_file(recording, tmp_path, monkeypatch):
    from tuina.recording import export

    calls = {"n": 0}
    original = export.McapExport.write

    def failing(self, message):
        calls["n"] += 1
        if calls["n"] == 20:
            raise OSError("disk full")
        original(self, message)

    monkeypatch.setattr(export.McapExport, "write", failing)
    with pytest.raises(OSError):
        export.export(recording, export.recorded_topics(recording), tmp_path / "a.mcap",
                      "mcap")
    assert calls["n"] == 20 and not list(tmp_path.glob("a.mcap*"))
