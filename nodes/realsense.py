"""realsense: a live Intel RealSense (D455, D435) or a recording of one, through pyrealsense2.

Inputs: ``done`` (optional, session/events: the camera closes when the session is done).
Outputs: ``rgb`` (rgb8), ``depth`` (z16 in the device's depth unit, aligned to colour unless
ALIGN_DEPTH is false), ``camera_info`` (colour intrinsics and distortion as floats, the depth
scale, base_T_camera from EXTRINSICS_FILE), all stamped with the frame's own timestamp.

PLAYBACK_FILE plays a ``.db3`` recording (or an older ``.bag``) through pyrealsense2's own
playback, not in real time, so no frame is skipped however slow the graph, the first one
included; the node sends them at the recorded pace (PACE recorded) or as fast as they are
read (PACE fast).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from tuina.nodes.camera import load_extrinsics

from tuina.messages import CAMERA_FRAME, CameraInfo, Header, SessionEvent, encode_rgb
from tuina.runtime import Outputs, configure, fail
from tuina.settings.realsense import PARAMS


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


class FramePairs:
    """Which (depth, colour) pairs to send: each depth frame once, in order, with the colour
    frame of the same instant (a syncer may first pair it with the previous colour frame)."""

    def __init__(self, fps: float):
        self.half_period_ms = 500.0 / fps
        self.last_number = -1

    def take(self, depth: Any, color: Any) -> bool:
        """Whether to send this pair; remembers the depth frame if so."""
        if depth.get_frame_number() <= self.last_number or \
                abs(color.get_timestamp() - depth.get_timestamp()) > self.half_period_ms:
            return False
        self.last_number = depth.get_frame_number()
        return True


class LiveCamera:
    """A connected camera through a pipeline: colour and depth at WIDTH x HEIGHT x FPS."""

    def __init__(self, rs: Any, cfg: dict[str, Any]):
        devices = {d.get_info(rs.camera_info.serial_number): d
                   for d in rs.context().query_devices()}
        serial = cfg["SERIAL"]
        if not devices or (serial and serial not in devices) or (not serial and len(devices) > 1):
            why = ("no RealSense camera is connected" if not devices else
                   f"no camera with serial {serial}" if serial else "several cameras are "
                   "connected")
            fail("realsense", f"{why}; found: {device_list(rs)}; set SERIAL to one of them, "
                 "or PLAYBACK_FILE to a recording")
        config = rs.config()
        config.enable_device(serial or next(iter(devices)))
        config.enable_stream(rs.stream.depth, cfg["WIDTH"], cfg["HEIGHT"], rs.format.z16,
                             cfg["FPS"])
        config.enable_stream(rs.stream.color, cfg["WIDTH"], cfg["HEIGHT"], rs.format.rgb8,
                             cfg["FPS"])
        self.rs, self.timeout_ms = rs, cfg["TIMEOUT_MS"]
        self.pipeline = rs.pipeline()
        try:
            profile = self.pipeline.start(config)
        except RuntimeError as err:
            fail("realsense", f"cannot start the camera ({err}); found: {device_list(rs)}")
        self.device = profile.get_device()
        self.depth_profile = profile.get_stream(rs.stream.depth)
        self.color_profile = profile.get_stream(rs.stream.color)
        self._pairs = FramePairs(self.depth_profile.fps())

    def next_pair(self) -> Any:
        """The next frameset of a depth frame and its own colour frame."""
        while True:
            ok, frames = self.pipeline.try_wait_for_frames(self.timeout_ms)
            if not ok:
                fail("realsense", f"the camera sent nothing for {self.timeout_ms} ms; check its "
                     f"USB 3 link (found: {device_list(self.rs)})", code=1)
            depth, color = frames.get_depth_frame(), frames.get_color_frame()
            if depth and color and self._pairs.take(depth, color):
                return frames

    def close(self) -> None:
        self.pipeline.stop()


class Playback:
    """A .db3 / .bag recording played through its own sensors, not in real time: the playback
    waits while this node is busy, so no frame is lost. The pipeline is not used here: its
    streams start one after the other while the file already plays, and under load it lost
    the first one to seven frames."""

    STREAM_END_S = 5.0  # the playback says nothing and has not stopped: give up
    MAX_QUEUED = 4  # frames read ahead of the node; then the playback waits

    def __init__(self, rs: Any, path: str):
        if not Path(path).is_file():
            fail("realsense", f"no recording at PLAYBACK_FILE {path}; give a .db3 or .bag file")
        self.rs = rs
        try:
            self.device = rs.context().load_device(path)
        except RuntimeError as err:
            fail("realsense", f"cannot play {path} ({err}); give a RealSense .db3 or .bag "
                 "recording")
        self.playback = self.device.as_playback()
        self.playback.set_real_time(False)
        wanted = (rs.stream.depth, rs.stream.color)
        profiles: dict[Any, Any] = {}
        self.sensors = []
        for sensor in self.device.query_sensors():
            mine = [p for p in sensor.get_stream_profiles() if p.stream_type() in wanted]
            if mine:
                sensor.open(mine)
                self.sensors.append(sensor)
                profiles.update({p.stream_type(): p for p in mine})
        missing = [str(k).split(".")[-1] for k in wanted if k not in profiles]
        if missing:
            fail("realsense", f"{path} has no {' or '.join(missing)} stream; record both depth "
                 "and colour")
        self.depth_profile, self.color_profile = profiles[wanted[0]], profiles[wanted[1]]
        self._frames: deque[Any] = deque()
        self._changed = threading.Condition()
        self._holding = False  # set once playing: holding the reader while it starts deadlocks
        self._closing = False
        self._latest: dict[Any, Any] = {}
        self._pairs = FramePairs(self.depth_profile.fps())
        self._pair: tuple[Any, Any] = ()
        self._framesets = rs.frame_queue(2, keep_frames=True)
        # rs.align takes a frameset: a processing block makes one of the chosen pair
        self._composer = rs.processing_block(lambda _frame, source: source.frame_ready(
            source.allocate_composite_frame(list(self._pair))))
        self._composer.start(self._framesets)
        self.playback.pause()  # both streams listen before the first frame is read
        for sensor in self.sensors:
            sensor.start(self._put)
        self.playback.resume()
        self._holding = True

    def _put(self, frame: Any) -> None:
        frame.keep()
        with self._changed:
            self._frames.append(frame)
            self._changed.notify_all()
            # holding the playback's reader holds the playback: it waits for the node
            while len(self._frames) > self.MAX_QUEUED and self._holding and not self._closing:
                self._changed.wait(0.1)

    def _get(self, timeout_s: float) -> Any:
        with self._changed:
            if not self._frames:
                self._changed.wait(timeout_s)
            frame = self._frames.popleft() if self._frames else None
            self._changed.notify_all()
            return frame

    def next_pair(self) -> Any:
        """The next frameset of a depth frame and its own colour frame; None at the end."""
        rs = self.rs
        silent_since = time.monotonic()
        while True:
            frame = self._get(0.05)
            if frame is None:
                ended = self.playback.current_status() == rs.playback_status.stopped
                if (ended and not self._frames) or \
                        time.monotonic() - silent_since > self.STREAM_END_S:
                    return None
                continue
            silent_since = time.monotonic()
            self._latest[frame.get_profile().stream_type()] = frame
            depth, color = self._latest.get(rs.stream.depth), self._latest.get(rs.stream.color)
            if depth is not None and color is not None and self._pairs.take(depth, color):
                self._pair = (depth, color)
                self._composer.invoke(depth)
                frames = self._framesets.wait_for_frame(1000).as_frameset()
                self._pair = ()
                return frames

    def close(self) -> None:
        with self._changed:
            self._closing = True
            self._frames.clear()
            self._changed.notify_all()
        self._latest.clear()
        for sensor in self.sensors:
            sensor.stop()
            sensor.close()


def camera_info(rs: Any, camera: LiveCamera | Playback, extrinsics: list[float]) -> CameraInfo:
    """The colour stream's intrinsics, distortion and the device's depth scale."""
    intr = camera.color_profile.as_video_stream_profile().get_intrinsics()
    scale = camera.device.first_depth_sensor().get_depth_scale()
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

    playback = bool(cfg["PLAYBACK_FILE"])
    camera = Playback(rs, cfg["PLAYBACK_FILE"]) if playback else LiveCamera(rs, cfg)
    info = camera_info(rs, camera, extrinsics)
    align = rs.align(rs.stream.color) if cfg["ALIGN_DEPTH"] else None
    node = Node()
    out = Outputs(node)
    first: tuple[float, float] | None = None  # (frame time, wall time) of the first frame
    sent = 0
    try:
        while True:
            frames = camera.next_pair()
            if frames is None:
                break  # the recording is over
            depth, color = frames.get_depth_frame(), frames.get_color_frame()
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
        camera.close()
    print(f"realsense: sent {sent} frames", flush=True)


if __name__ == "__main__":
    main()
