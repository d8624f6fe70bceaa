"""The RealSense node on a real pyrealsense2 recording, made from a software device (no
camera needed): frames, intrinsics and depth scale come back exactly."""

import json
import time

import numpy as np
import pytest

rs = pytest.importorskip("pyrealsense2")

W, H, FPS, FRAMES = 64, 48, 30, 30
COEFFS = [0.01, -0.02, 0.001, 0.0005, 0.003]


def depth_image(k: int) -> np.ndarray:
    return (np.arange(W * H, dtype=np.uint16).reshape(H, W) * 3 + 500 + k).astype(np.uint16)


def color_image(k: int) -> np.ndarray:
    image = np.zeros((H, W, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = k * 7, np.arange(W, dtype=np.uint8), 200
    return image


def record_software_device(path) -> None:
    """FRAMES known frame pairs, through pyrealsense2's recorder."""
    from tuina.testing import write_db3

    write_db3(path, ((depth_image(k), color_image(k)) for k in range(FRAMES)), 58.5, 59.0,
              31.25, 23.75, COEFFS, FPS)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("realsense") / "session.db3"
    record_software_device(path)
    return path


@pytest.fixture
def extrinsics(tmp_path):
    path = tmp_path / "extrinsics.json"
    T = np.eye(4)
    T[:3, 3] = [0.5, 0.0, 0.9]
    path.write_text(json.dumps({"base_T_camera": T.ravel().tolist()}))
    return path


def run_realsense(monkeypatch, **env):
    import dora
    from dora.testing import MockNode
    from tuina.nodes import realsense

    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    mock = MockNode([])
    mock.next = lambda timeout=None: None  # no input wired: the camera paces the node
    monkeypatch.setattr(dora, "Node", lambda *a, **k: mock)
    start = time.monotonic()
    realsense.main()
    return mock, time.monotonic() - start


def test_playback_returns_every_frame_intrinsics_and_depth_scale_exactly(
        recording, extrinsics, monkeypatch):
    from tuina.messages import CameraInfo, decode_rgb

    mock, took = run_realsense(monkeypatch, PLAYBACK_FILE=recording, EXTRINSICS_FILE=extrinsics,
                               ALIGN_DEPTH="false")
    depths, rgbs = mock.outputs["depth"], mock.outputs["rgb"]
    # every frame, in order, paired with its own colour frame
    assert len(depths) == len(rgbs) == FRAMES
    for k, (depth, rgb) in enumerate(zip(depths, rgbs, strict=True)):
        assert np.array_equal(depth.to_numpy().reshape(H, W), depth_image(k))
        assert np.array_equal(decode_rgb(rgb, {"width": W, "height": H}), color_image(k))
    info = CameraInfo.from_arrow(mock.outputs["camera_info"][0])
    assert (info.width, info.height) == (W, H)
    assert (info.fx, info.fy, info.cx, info.cy) == (58.5, 59.0, 31.25, 23.75)
    assert info.distortion == pytest.approx(COEFFS, abs=1e-8)  # stored as float32
    assert info.depth_scale == pytest.approx(0.001, rel=1e-6)
    assert np.asarray(info.base_T_camera).reshape(4, 4)[:3, 3] == pytest.approx([0.5, 0, 0.9])
    # at the recorded pace: 30 frames at 30 Hz take about a second
    assert 0.85 < took < 2.5


def test_aligned_playback_keeps_the_colour_geometry(recording, extrinsics, monkeypatch):
    mock, _ = run_realsense(monkeypatch, PLAYBACK_FILE=recording, EXTRINSICS_FILE=extrinsics,
                            PACE="fast")
    assert len(mock.outputs["depth"]) == FRAMES
    assert mock.outputs["depth"][0].to_numpy().size == W * H


@pytest.mark.parametrize("trial", range(3))
def test_a_slow_graph_loses_no_frame_of_a_playback(recording, extrinsics, monkeypatch, trial):
    """The playback waits for the node: a graph that takes 50 ms a frame (slower than the
    recording's 30 Hz) still gets every frame once, in order, with its own colour frame."""
    from tuina.messages import decode_rgb
    from tuina.runtime import Outputs

    send = Outputs.send_encoded

    def slow_send(self, *args, **kwargs):
        time.sleep(0.025)
        return send(self, *args, **kwargs)

    monkeypatch.setattr(Outputs, "send_encoded", slow_send)  # rgb and depth: 50 ms a frame
    mock, took = run_realsense(monkeypatch, PLAYBACK_FILE=recording, EXTRINSICS_FILE=extrinsics,
                               ALIGN_DEPTH="false", PACE="fast")
    assert took >= FRAMES * 0.05
    rgbs = mock.outputs["rgb"]
    assert [decode_rgb(v, {"width": W, "height": H})[0, 0, 0] for v in rgbs] == \
        [color_image(k)[0, 0, 0] for k in range(FRAMES)]
    assert [int(d.to_numpy()[0]) for d in mock.outputs["depth"]] == \
        [int(depth_image(k)[0, 0]) for k in range(FRAMES)]


def test_a_file_that_is_not_a_recording_is_one_line(tmp_path, extrinsics, monkeypatch, capfd):
    bogus = tmp_path / "session.db3"
    bogus.write_bytes(b"not a recording")
    with pytest.raises(SystemExit) as stop:
        run_realsense(monkeypatch, PLAYBACK_FILE=bogus, EXTRINSICS_FILE=extrinsics)
    assert stop.value.code == 2
    err = capfd.readouterr().err.strip()
    assert err.count("\n") == 0 and f"cannot play {bogus}" in err


def test_no_camera_is_one_line_listing_what_was_found(extrinsics, monkeypatch, capfd):
    with pytest.raises(SystemExit) as stop:
        run_realsense(monkeypatch, EXTRINSICS_FILE=extrinsics, SERIAL="999")
    assert stop.value.code == 2
    err = capfd.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "no RealSense camera is connected; found: none" in err and "PLAYBACK_FILE" in err


def test_a_missing_extrinsics_file_stops_the_camera_node(recording, monkeypatch, capfd):
    with pytest.raises(SystemExit):
        run_realsense(monkeypatch, PLAYBACK_FILE=recording)
    assert "EXTRINSICS_FILE is empty; run `tuina calibrate`" in capfd.readouterr().err
