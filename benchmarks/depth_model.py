"""The camera node's depth model: time per frame on this machine.

    .venv/bin/python benchmarks/depth_model.py [--frames 300] [--width 640] [--height 480]

A table 1 m below the camera with a box on it (a depth discontinuity for the edge dropouts),
through ``apply_depth_noise`` as the camera node calls it, one fresh generator per frame
(the node seeds each frame by its stamp). The first frame builds the precomputed noise
fields and is timed apart. This is a measurement, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from tuina.operators.sensor import DepthNoise, apply_depth_noise


def main() -> None:
    """Print the build time and the per-frame p50 / p99 / max as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()
    depth = np.full((args.height, args.width), 1.0, np.float32)
    depth[args.height // 4:args.height // 2, args.width // 3:args.width // 2] = 0.9
    fx = args.height / 2 / np.tan(np.radians(29.0))
    started = time.perf_counter()
    apply_depth_noise(depth, fx, DepthNoise(), np.random.default_rng(0))
    build_ms = (time.perf_counter() - started) * 1e3
    times = []
    for k in range(args.frames):
        started = time.perf_counter()
        apply_depth_noise(depth, fx, DepthNoise(), np.random.default_rng([0, k]))
        times.append((time.perf_counter() - started) * 1e3)
    print(json.dumps({"frame": f"{args.width}x{args.height}", "frames": args.frames,
                      "build_ms": round(build_ms, 1),
                      "p50_ms": round(float(np.percentile(times, 50)), 2),
                      "p99_ms": round(float(np.percentile(times, 99)), 2),
                      "max_ms": round(float(np.max(times)), 2)}))


if __name__ == "__main__":
    main()
