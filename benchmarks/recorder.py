"""Recorder throughput and CPU, and replay speed, on this machine.

    .venv/bin/python benchmarks/recorder.py [--seconds 20] [--fps 30] [--recording DIR]

1. A synthetic RealSense-sized source (640x480 RGB + z16 depth at --fps, robot states at
   100 Hz) recorded through dora by the recorder `tuina record` injects: messages, lost
   messages, MB written, MB/s and the recorder's CPU share of one core (its own account).
2. With --recording (a `tuina record` of dataflows/sim.yml): the force-controller replayed
   alone at --speed 0, timed against the recorded duration.
This is a measurement, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tuina.record import with_recorder
from tuina.recording import read_manifest

ROOT = Path(__file__).resolve().parents[1]
ALL_BUT_CONTROLLER = "world,camera,operator,grounding,pose-fit,icp-tracker,planner,robot,session"


def recorder_line(out_dir: Path) -> str:
    """The recorder's closing line from dora's logs of one run."""
    for log in out_dir.glob("*/log_recorder.jsonl"):
        for line in log.read_text().splitlines():
            message = json.loads(line).get("msg", "")
            if message.startswith("tuina-recorder: "):
                return message
    return "no recorder line"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--recording", default=None)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    with tempfile.TemporaryDirectory(prefix="tuina-bench-rec-") as tmp:
        spec = {"nodes": [{"id": "camera", "path": str(ROOT / "benchmarks" / "rgbd_source.py"),
                           "outputs": ["rgb", "depth", "robot_state"],
                           "env": {"FPS": args.fps, "SECONDS": args.seconds}}]}
        graph = Path(tmp) / "bench.yml"
        graph.write_text(yaml.safe_dump(spec))
        folder = Path(tmp) / "rec"
        topics = ["camera/rgb", "camera/depth", "camera/robot_state"]
        graph.write_text(yaml.safe_dump(with_recorder(spec, topics, folder, graph)))
        subprocess.run([str(bin_dir / "dora"), "run", str(graph)], env=env,
                       capture_output=True, text=True, timeout=int(args.seconds) + 120)
        manifest = read_manifest(folder)
        counts = {t: (v["count"], v["lost"]) for t, v in manifest["topics"].items()}
        print(f"recording {args.seconds:.0f} s of 640x480 RGB-D at {args.fps:.0f} Hz + 100 Hz "
              f"robot states: {counts}")
        print(recorder_line(Path(tmp) / "out"))
    if args.recording:
        manifest = read_manifest(Path(args.recording))
        recorded_s = (manifest["end_wall_ns"] - manifest["start_wall_ns"]) * 1e-9
        with tempfile.TemporaryDirectory(prefix="tuina-bench-replay-") as tmp:
            start = time.perf_counter()
            subprocess.run([str(bin_dir / "tuina"), "replay", args.recording, "--replace",
                            ALL_BUT_CONTROLLER, "--speed", "0", "-o", str(Path(tmp) / "r")],
                           env=env, capture_output=True, text=True, timeout=600)
            took = time.perf_counter() - start
        print(f"force-controller replay at --speed 0: {took:.1f} s for {recorded_s:.1f} s "
              f"recorded ({recorded_s / took:.1f}x real time, graph start included)")


if __name__ == "__main__":
    main()
