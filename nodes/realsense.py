"""realsense: a live Intel RealSense (D455, D435) or a recording of one, through pyrealsense2.

Inputs: ``done`` (optional, session/events: the camera closes when the session is done).
Outputs: ``rgb`` (rgb8), ``depth`` (z16 in the device's depth unit, aligned to colour unless
ALIGN_DEPTH is false), ``camera_info`` (colour intrinsics and distortion as floats, the depth
scale, base_T_camera from EXTRINSICS_FILE), all stamped with the frame's own timestamp.

PLAYBACK_FILE plays a ``.db3`` recording (or an older ``.bag``) through pyrealsense2's own
playback, not in real time, so no frame is skipped however slow the graph; the node sends
them at the recorded pace (PACE recorded) or as fast as they are read (PACE fast).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from tuina.nodes.camera import load_extrinsics

from tuina.config import Param
from tuina.messages import CAMERA_FRAME, CameraInfo, Header, SessionEvent, encode_rgb
from tuina.node import Outputs, configure, fail

PARAMS = [
    Param("SERIAL", "str", "", "-", "serial number of the camera to open; empty: the only "
          "one connected"),
    Param("PLAYBACK_FILE", "path", "", "-", "a .db3 (or older .bag) recording to play instead "
          "of a live camera"),
    Param("PACE", "choice", "recorded", "-", "playback: send frames at the recorded pace, or "
          "as fast as they are read", choices=("recorded", "fast")),
    Param("WIDTH", "int", 640, "px", "live: stream width", low=160, high=1920),
    Param("HEIGHT", "int", 480, "px", "live: stream height", low=120, high=1080),
    Param("FPS", "int", 30, "Hz", "live: frame rate", low=5, high=90),
    Param("ALIGN_DEPTH", "bool", True, "-", "re-project depth onto the colour camera "
          "(rs.align), so one pixel is the same point in both"),
    Param("EXTRINSICS_FILE", "path", "", "-", "JSON with base_T_camera (4x4 row-major) from "
          "`tuina calibrate`; required: without it no position is in the robot's frame"),
    Param("TIMEOUT_MS", "int", 5000, "ms", "live: a camera silent this long is an error",
          low=100),
]


def z16_message(raw: np.ndarray, header: Header, depth_scale: float) -> tuple[Any, dict]:
    """A depth frame as the contract's z16 message, the device's raw values kept exactly."""
    import pyarrow as pa

    h, w = raw.shape
    return pa.array(np.ascontiguousarray(raw, np.uint16).reshape(-1)), header.to_metadata(
        width=w, height=h, encoding="z16", depth_scale=float(depth_scale))


def device_list(rs: Any) -> str:
    """The connected RealSense devices, as 'name (serial)'."""
    found = [f"{d.get_info(rs.camera_info.name)} ({d.get_info(rs.camera_info.serial_number)})"
             for d in rs.context().query_devices()]
    return ", ".join(found) or "none"


def open_pipeline(rs: Any, cfg: dict[str, Any]) -> tuple[Any, Any]:
    """Start the pipeline on the chosen camera or file; (pipeline, its profile)."""
    config = rs.config()
    path = cfg["PLAYBACK_FILE"]
    if path:
        if not Path(path).is_file():
            fail("realsense", f"no recording at PLAYBACK_FILE {path}; give a .db3 or .bag file")
        config.enable_device_from_file(path, repeat_playback=False)
    else:
        devices = {d.get_info(rs.camera_info.serial_number): d
                   for d in rs.context().query_devices()}
        serial = cfg["SERIAL"]
        if not devices or (serial and serial not in devices) or (not serial and len(devices) > 1):
            why = ("no RealSense camera is connected" if not devices else
                   f"no camera with serial {serial}" if serial else "several cameras are "
                   "connected")
            fail("realsense", f"{why}; found: {device_list(rs)}; set SERIAL to one of them, "
                 "or PLAYBACK_FILE to a recording")
        config.enable_device(serial or next(iter(devices)))
        config.enable_stream(rs.stream.depth, cfg["WIDTH"], cfg["HEIGHT"], rs.format.z16,
                             cfg["FPS"])
        config.enable_stream(rs.stream.color, cfg["WIDTH"], cfg["HEIGHT"], rs.format.rgb8,
                             cfg["FPS"])
    pipeline = rs.pipeline()
    try:
        profile = pipeline.start(config)
    except RuntimeError as err:
        fail("realsense", f"cannot start the camera ({err}); found: {device_list(rs)}")
    if path:  # not in real time: the playback waits for each frame to be taken
        profile.get_device().as_playback().set_real_time(False)
    return pipeline, profile


def camera_info(rs: Any, profile: Any, extrinsics: list[float]) -> CameraInfo:
    """The colour stream's intrinsics, distortion and the device's depth scale."""
    intr = profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
    scale = profile.get_device().first_depth_sensor().get_depth_scale()
    return CameraInfo(intr.width, intr.height, float(intr.fx), float(intr.fy), float(intr.ppx),
                      float(intr.ppy), [float(c) for c in intr.coeffs], extrinsics, float(scale))


def main() -> None:
    """Send every frame pair of the camera or recording until it ends or the graph stops."""
    cfg = configure("realsense", PARAMS)
    if not cfg["EXTRINSICS_FILE"]:
        fail("realsense", "EXTRINSICS_FILE is empty; run `tuina calibrate` and set it to the "
             "file it writes")
    try:
        extrinsics = load_extrinsics(cfg["EXTRINSICS_FILE"])
    except ValueError as err:
        fail("realsense", str(err))
    import pyrealsense2 as rs
    from dora import Node

    pipeline, profile = open_pipeline(rs, cfg)
    info = camera_info(rs, profile, extrinsics)
    align = rs.align(rs.stream.color) if cfg["ALIGN_DEPTH"] else None
    node = Node()
    out = Outputs(node)
    playback = bool(cfg["PLAYBACK_FILE"])
    timeout_ms = 1000 if playback else cfg["TIMEOUT_MS"]
    first: tuple[float, float] | None = None  # (frame time, wall time) of the first frame
    fps = profile.get_stream(rs.stream.depth).fps()
    half_period_ms = 500.0 / fps
    last_number = -1  # the depth frame last sent: each is sent once, in order
    sent = 0
    try:
        while True:
            ok, frames = pipeline.try_wait_for_frames(timeout_ms)
            if not ok:
                if playback:
                    break  # the recording is over
                fail("realsense", f"the camera sent nothing for {timeout_ms} ms; check its "
                     f"USB 3 link (found: {device_list(rs)})", code=1)
            depth, color = frames.get_depth_frame(), frames.get_color_frame()
            if not depth or not color or depth.get_frame_number() <= last_number:
                continue
            if abs(color.get_timestamp() - depth.get_timestamp()) > half_period_ms:
                continue  # the syncer paired it with the previous colour frame: wait for its own
            last_number = depth.get_frame_number()
            frame_ms = depth.get_timestamp()
            if align is not None:
                aligned = align.process(frames)
                depth, color = aligned.get_depth_frame(), aligned.get_color_frame()
            if playback and cfg["PACE"] == "recorded":
                first = first or (frame_ms, time.monotonic())
                wait = (frame_ms - first[0]) * 1e-3 - (time.monotonic() - first[1])
                if wait > 0:
                    time.sleep(wait)
            stamp = int(round(frame_ms * 1e6))
            out.send("camera_info", info.to_arrow(), stamp, CAMERA_FRAME)
            # copies: librealsense reuses a small pool of frames, which must go back at once
            out.send_encoded("depth", z16_message(np.array(depth.get_data(), copy=True),
                                                  out.header("depth", stamp, CAMERA_FRAME),
                                                  info.depth_scale))
            out.send_encoded("rgb", encode_rgb(np.array(color.get_data(), copy=True),
                                               out.header("rgb", stamp, CAMERA_FRAME)))
            del depth, color, frames
            sent += 1
            event = node.next(timeout=0.001)  # None: no input is wired, go on
            if event is not None and (event["type"] in ("STOP", "INPUT_CLOSED") or (
                    event["type"] == "INPUT" and event["id"] == "done"
                    and SessionEvent.from_arrow(event["value"]).kind == "done")):
                break
    finally:
        pipeline.stop()
    print(f"realsense: sent {sent} frames", flush=True)


if __name__ == "__main__":
    main()
