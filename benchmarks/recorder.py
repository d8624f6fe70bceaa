"""Recorder throughput and CPU, and replay speed, on this machine.

    .venv/bin/python benchmarks/recorder.py [--seconds 20] [--fps 30] [--recording DIR]

1. A synthetic RealSense-sized source (640x480 RGB + z16 depth at --fps, robot states at
   100 Hz) recorded through dora by the recorder `tuina record` injects: messages, lost
   messages, MB written, MB/s and the recorder's CPU share of one core (its own account).
2. With --recording (a `tuina record` of dataflows/sim.yml): replays at --speed 0 of the
   control node alone, of the perception nodes, and of the whole graph (hardware from the
   recording); the nodes under replay are timed from their first to their last output,
   against the same span when recorded.
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

from tuina.recording import read_manifest, read_topic
from tuina.recording.record import with_recorder
from tuina.recording.replay import default_replaced

ROOT = Path(__file__).resolve().parents[1]
REPLAYS = [  # (what, --replace): None replaces the hardware-facing nodes only
    ("control", "world,camera,operator,grounding,pose-fit,icp-tracker,planner,robot,session"),
    ("perception", "world,camera,operator,planner,force-controller,robot,session"),
    ("whole graph", None),
]


def output_span_s(folder: Path, nodes: list[str]) -> tuple[float, int]:
    """Seconds from the first to the last output of ``nodes`` in a recording, and how many."""
    recv = []
    for topic, entry in read_manifest(folder)["topics"].items():
        if topic.split("/")[0] in nodes and entry["count"] > 0:
            recv += read_topic(folder, topic, columns=("recv_ns",)).column("recv_ns").to_pylist()
    return (max(recv) - min(recv)) * 1e-9, len(recv)


def replay_speed(recording: Path, label: str, replace: str | None, bin_dir: Path,
                 env: dict[str, str]) -> None:
    """Replay at --speed 0 and compare the nodes under replay with their recorded pace."""
    spec = yaml.safe_load(read_manifest(recording)["graph"])
    replaced = replace.split(",") if replace else default_replaced(spec)
    nodes = [n["id"] for n in spec["nodes"]
             if n["id"] not in replaced and n.get("path") != "dynamic"]
    with tempfile.TemporaryDirectory(prefix="tuina-bench-replay-") as tmp:
        out = Path(tmp) / "r"
        command = [str(bin_dir / "tuina"), "replay", str(recording), "--speed", "0", "-o",
                   str(out)] + (["--replace", replace] if replace else [])
        start = time.perf_counter()
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        took = time.perf_counter() - start
        if proc.returncode != 0:
            print(f"{label}: replay failed (exit {proc.returncode}): {proc.stderr[-500:]}")
            return
        replayed_s, count = output_span_s(out, nodes)
    recorded_s, _ = output_span_s(recording, nodes)
    print(f"{label} ({', '.join(nodes)}): {count} outputs in {replayed_s:.1f} s, recorded over "
          f"{recorded_s:.1f} s: {recorded_s / replayed_s:.1f}x real time ({took:.1f} s with "
          "the graph's start and end)")


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
        for label, replace in REPLAYS:
            replay_speed(Path(args.recording), label, replace, bin_dir, env)


if __name__ == "__main__":
    main()
