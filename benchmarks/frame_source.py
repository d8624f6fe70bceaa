"""A camera standing in for the RealSense at its 30 Hz: one 640x480 colour frame on every
tick (a moving bar over a gradient, so the JPEG changes). Used by benchmarks/console.py to
measure what the console's page shows when the camera is not the limit."""

from __future__ import annotations

import time

import numpy as np
from dora import Node

from tuina.messages import Header, encode_rgb

WIDTH, HEIGHT = 640, 480


def main() -> None:
    node = Node()
    base = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    base[..., 0] = np.linspace(0, 255, WIDTH, dtype=np.uint8)
    base[..., 1] = np.linspace(0, 255, HEIGHT, dtype=np.uint8)[:, None]
    seq = 0
    for event in node:
        if event["type"] == "STOP":
            break
        if event["type"] != "INPUT":
            continue
        image = base.copy()
        x = seq * 8 % WIDTH
        image[:, x:x + 16] = 255
        array, metadata = encode_rgb(image, Header(time.time_ns(), seq, "camera"))
        node.send_output("rgb", array, metadata)
        seq += 1


if __name__ == "__main__":
    main()
