"""A synthetic RealSense-sized source for the recorder benchmark: 640x480 RGB and z16 depth
at FPS plus 100 Hz robot states, for SECONDS, with the contract's metadata."""

import os
import time

import numpy as np
from dora import Node

from tuina.messages import RobotState, encode_depth, encode_rgb
from tuina.runtime import Outputs


def main() -> None:
    fps, seconds = float(os.environ.get("FPS", 30)), float(os.environ.get("SECONDS", 20))
    rng = np.random.default_rng(0)
    node = Node()
    out = Outputs(node)
    base_rgb = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    base_depth = 0.6 + 0.3 * rng.random((480, 640)).astype(np.float32)
    start = time.perf_counter()
    frame = state = 0
    while time.perf_counter() - start < seconds:
        now = time.perf_counter() - start
        if now >= frame / fps:
            stamp = int(frame / fps * 1e9)
            noise = rng.normal(0, 0.002, (480, 640)).astype(np.float32)  # sensor-like noise
            out.send_encoded("rgb", encode_rgb(np.roll(base_rgb, frame, axis=1),
                                               out.header("rgb", stamp, "camera")))
            out.send_encoded("depth", encode_depth(base_depth + noise,
                                                   out.header("depth", stamp, "camera")))
            frame += 1
        if now >= state / 100.0:
            msg = RobotState([0.0] * 7, [0.0] * 7, [0.4, 0, 0.2], [1.0, 0, 0, 0], [0.0] * 6,
                             "ok", [0.0] * 7)
            out.send("robot_state", msg.to_arrow(), int(state * 1e7), "base")
            state += 1
        time.sleep(0.001)


if __name__ == "__main__":
    main()
