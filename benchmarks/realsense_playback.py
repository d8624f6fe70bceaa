"""The RealSense node playing a recording: frames delivered, rate and gaps, on this machine.

    .venv/bin/python benchmarks/realsense_playback.py [--frames 300] [--width 640]
        [--height 480] [--fps 30] [--no-align] [--pace recorded|fast]

Writes a .db3 with pyrealsense2's own recorder from a software device (random depth and
colour, the depth changing every frame), then runs the node on it under dora's MockNode and
times every depth frame it sends. This is a measurement, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--no-align", action="store_true", help="ALIGN_DEPTH false")
    parser.add_argument("--pace", choices=("recorded", "fast"), default="recorded")
    args = parser.parse_args()
    import dora
    from dora.testing import MockNode
    from tuina.nodes import realsense

    from tuina.runtime import Outputs
    from tuina.testing import write_db3

    rng = np.random.default_rng(0)
    shape = (args.height, args.width)
    depth0 = (rng.random(shape) * 2000 + 500).astype(np.uint16)
    colour = (rng.random((*shape, 3)) * 255).astype(np.uint8)
    sent_at: list[float] = []
    send = Outputs.send_encoded

    def timed(self: Outputs, output: str, encoded: tuple) -> None:
        if output == "depth":
            sent_at.append(time.monotonic())
        send(self, output, encoded)

    with tempfile.TemporaryDirectory(prefix="tuina-bench-rs-") as tmp:
        recording, extrinsics = Path(tmp) / "bench.db3", Path(tmp) / "extrinsics.json"
        f = args.width / 1.07
        recorded = write_db3(recording, ((depth0 + k, colour) for k in range(args.frames)),
                             f, f, (args.width - 1) / 2, (args.height - 1) / 2, [0.0] * 5,
                             args.fps)
        extrinsics.write_text(json.dumps({"base_T_camera": np.eye(4).ravel().tolist()}))
        os.environ.update(PLAYBACK_FILE=str(recording), EXTRINSICS_FILE=str(extrinsics),
                          ALIGN_DEPTH=str(not args.no_align).lower(), PACE=args.pace)
        mock = MockNode([])
        mock.next = lambda timeout=None: None  # no input wired: the recording paces the node
        dora.Node = lambda *a, **k: mock
        Outputs.send_encoded = timed
        realsense.main()
    gaps = np.diff(sent_at) * 1e3
    rate = (len(sent_at) - 1) / (sent_at[-1] - sent_at[0])
    print(f"{args.width}x{args.height} at {args.fps} Hz, align {not args.no_align}, pace "
          f"{args.pace}: {len(sent_at)}/{recorded} frames sent, {rate:.2f} Hz, gaps p50 "
          f"{np.median(gaps):.1f} ms, p99 {np.percentile(gaps, 99):.1f} ms, max "
          f"{gaps.max():.1f} ms")


if __name__ == "__main__":
    main()
