"""RealSense recordings (.db3) written from a software device with pyrealsense2's own recorder:
no camera needed. The tests, benchmarks and hardware-graph checks play them through the
RealSense node."""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import pyrealsense2 as rs


def write_db3(path, frames: Iterable[tuple[np.ndarray, np.ndarray]], fx: float, fy: float,
              cx: float, cy: float, coeffs: list[float], fps: int, depth_units: float = 0.001,
              start_ms: float = 1000.0) -> int:
    """Record (z16 depth, rgb8 colour) pairs with pyrealsense2's own recorder; returns the
    number of frames. Both streams share the intrinsics (depth already aligned)."""
    frames = iter(frames)
    depth0, color0 = next(frames)
    h, w = depth0.shape
    device = rs.software_device()
    device.register_info(rs.camera_info.name, "Intel RealSense D455")
    device.register_info(rs.camera_info.serial_number, "012345678901")
    intr = rs.intrinsics()
    intr.width, intr.height, intr.ppx, intr.ppy, intr.fx, intr.fy = w, h, cx, cy, fx, fy
    intr.model, intr.coeffs = rs.distortion.brown_conrady, list(coeffs)
    sensors, profiles = [], []
    for name, kind, fmt, bpp, uid in (("Stereo Module", rs.stream.depth, rs.format.z16, 2, 0),
                                      ("RGB Camera", rs.stream.color, rs.format.rgb8, 3, 1)):
        sensor = device.add_sensor(name)
        stream = rs.video_stream()
        stream.type, stream.index, stream.uid, stream.fmt, stream.bpp = kind, 0, uid, fmt, bpp
        stream.width, stream.height, stream.fps, stream.intrinsics = w, h, fps, intr
        profiles.append(sensor.add_video_stream(stream))
        sensors.append(sensor)
    identity = rs.extrinsics()
    identity.rotation, identity.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
    profiles[0].register_extrinsics_to(profiles[1], identity)  # depth is already aligned
    sensors[0].add_read_only_option(rs.option.depth_units, depth_units)
    recorder = rs.recorder(str(path), device)
    for sensor, profile in zip(sensors, profiles, strict=True):
        sensor.open(profile)
        sensor.start(lambda frame: None)
    time.sleep(0.5)  # the recorder opens its streams on its own thread: frames before are lost
    count = 0
    for k, (depth, color) in enumerate([(depth0, color0), *frames]):
        for sensor, profile, image, bpp in ((sensors[0], profiles[0], depth, 2),
                                            (sensors[1], profiles[1], color, 3)):
            frame = rs.software_video_frame()
            frame.pixels, frame.stride, frame.bpp = np.ascontiguousarray(image), w * bpp, bpp
            frame.timestamp, frame.frame_number = start_ms + k * 1000.0 / fps, k
            frame.domain = rs.timestamp_domain.hardware_clock
            frame.profile = profile.as_video_stream_profile()
            if bpp == 2:
                frame.depth_units = depth_units
            sensor.on_video_frame(frame)
        count += 1
        time.sleep(0.002)
    for sensor in sensors:
        sensor.stop()
        sensor.close()
    del recorder  # closes the file
    return count
