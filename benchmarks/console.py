"""The console's cost and reach, on this machine (headless chromium driven by Playwright).

    .venv/bin/python benchmarks/console.py [--pairs 1] [--clicks 20] [--fps HZ]

1. Side by side: the sim graph's press (6 s at 6 N) without the console's page, then the same
   with the page served and open in a browser for the whole session (the world rendering the
   colour image at every frame in both: the camera is the same, the page is what differs).
   For each: the robot node's loop in wall time (rate, period jitter p99, state -> command
   latency), the camera's rate at the console and the image rate the page received (the
   page can show no more than the world renders).
2. E-stop reach: ``--clicks`` presses of the page's e-stop button; for each, the time from the
   click (the page's clock) to its arrival at an e-stop input of a node on the graph (a sink
   standing in for the robot node, which handles the input as it arrives): p50, p99, max;
   meanwhile a 30 Hz 640x480 camera feeds the page: the image rate it shows.
This is a measurement, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from tuina.evaluation.sessions import loop_cells, relocated, robot_loop, session_graph
from tuina.testing import niced_chromium

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
STEP = "press Zusanli with moderate pressure"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser(pw):
    """Headless chromium at nice 10: a person's browser usually runs on another device."""
    return niced_chromium(pw, "chromium")


def open_page(page, port: int, timeout_s: float) -> None:
    """Load the console's page once its server is up (the graph starts it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            page.goto(f"http://127.0.0.1:{port}/")
            return
        except Exception:  # playwright's Error: the server is not up yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def camera_hz(log_dirs: list[Path]) -> float:
    """The camera's frame rate at the console while a page was open (its own account)."""
    for log_dir in log_dirs:
        log = log_dir / "log_console.jsonl"
        if log.exists():
            for line in log.read_text().splitlines():
                if found := re.search(r"console: camera \d+ frames at ([0-9.]+) Hz",
                                      json.loads(line).get("msg", "")):
                    return float(found.group(1))
    return float("nan")


def session(with_page: bool, folder: Path, fps: float | None) -> dict:
    """One press session; the robot loop, and the page's image rate when it had one."""
    port = free_port()
    console = {"INSTRUCTION": STEP, "ROUTINE": "", "SERVE": with_page, "PORT": port}
    # the camera the same in both runs (colour on every frame, as a RealSense gives it with
    # or without a page): what differs is the console's page alone
    overrides = {"planner": {"PRESS_S": 6.0}, "console": console,
                 "world": {"RGB_EVERY": 1, **({"FPS": fps} if fps else {})}}
    path = session_graph(ROOT / "dataflows" / "sim.yml", overrides, folder, "run")
    proc = subprocess.Popen([str(BIN / "dora"), "run", str(path), "--stop-after", "200s"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rate = float("nan")
    if with_page:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            b = browser(pw)
            page = b.new_page()
            open_page(page, port, 120)
            page.wait_for_function("document.body.dataset.phase === 'approach'",
                                   timeout=120_000)
            page.click("#end")  # the session ends after this step
            frames, t0 = int(page.evaluate("document.body.dataset.frames || 0")), time.monotonic()
            page.wait_for_function("document.body.dataset.ended === 'true'", timeout=300_000)
            rate = (int(page.evaluate("document.body.dataset.frames")) - frames) / (
                time.monotonic() - t0)
            b.close()
    proc.communicate(timeout=240)
    logs = sorted((folder / "out").glob("*"))
    return {**robot_loop(logs), "page_hz": rate, "camera_hz": camera_hz(logs)}


def estop_reach(clicks: int, folder: Path) -> tuple[list[float], float]:
    """Milliseconds from each click on the page's e-stop to its arrival at a node; the
    image rate the page received meanwhile from a 30 Hz camera."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    spec = {"nodes": [
        {"id": "console", "path": "tuina-console",
         "inputs": {"heartbeat": "dora/timer/millis/100",
                    "rgb": {"source": "camera/rgb", "queue_size": 1}},
         "outputs": ["instruction", "events", "estop", "force_target"],
         "env": {"SERVE": True, "PORT": port}},
        {"id": "camera", "path": str(ROOT / "benchmarks" / "frame_source.py"),
         "inputs": {"tick": "dora/timer/millis/33"}, "outputs": ["rgb"]},
        {"id": "sink", "path": str(ROOT / "benchmarks" / "estop_sink.py"),
         # busy as the robot node is (an idle node wakes slowly on its first input)
         "inputs": {"estop": "console/estop", "tick": "dora/timer/millis/10"}}]}
    path = folder / "estop.yml"
    path.write_text(yaml.safe_dump(relocated(spec, ROOT / "dataflows" / "sim.yml")))
    proc = subprocess.Popen([str(BIN / "dora"), "run", str(path), "--stop-after",
                             f"{30 + clicks}s"], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    with sync_playwright() as pw:
        b = browser(pw)
        page = b.new_page()
        open_page(page, port, 60)
        page.wait_for_function("document.getElementById('conn').textContent === 'connected'")
        frames, t0 = int(page.evaluate("document.body.dataset.frames || 0")), time.monotonic()
        for _ in range(clicks):
            page.click("#estop")
            page.wait_for_timeout(300)
        rate = (int(page.evaluate("document.body.dataset.frames || 0")) - frames) / (
            time.monotonic() - t0)
        b.close()
    out, _ = proc.communicate(timeout=120)
    return [float(v) for v in re.findall(r"estop-age-ms ([0-9.]+)", out)], rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--fps", type=float, help="the world camera's frame rate (sim time) "
                        "in both runs; default: the graph's")
    args = parser.parse_args()
    print("| run | page | states (Hz) | state / command jitter p99 (ms) | latency p50 / p99 "
          "(ms) | camera at the console / image on the page (Hz) |")
    print("|---|---|---|---|---|---|")
    for pair in range(args.pairs):
        for with_page in (False, True):
            with tempfile.TemporaryDirectory(prefix="tuina-bench-console-") as tmp:
                r = session(with_page, Path(tmp), args.fps)
            print(f"| {pair} | {'open' if with_page else 'none'} | {loop_cells(r)} | "
                  f"{r['camera_hz']:.1f} / {r['page_hz']:.1f} |",
                  flush=True)
    with tempfile.TemporaryDirectory(prefix="tuina-bench-estop-") as tmp:
        ages, page_hz = estop_reach(args.clicks, Path(tmp))
    ages = np.array(ages)
    print(f"\na 30 Hz 640x480 camera (benchmarks/frame_source.py) to the page, during the "
          f"clicks: {page_hz:.1f} Hz (IMAGE_HZ caps it)")
    if len(ages):
        print(f"\ne-stop click -> node: {len(ages)} of {args.clicks} clicks arrived; p50 "
              f"{np.percentile(ages, 50):.1f} ms, p99 {np.percentile(ages, 99):.1f} ms, max "
              f"{ages.max():.1f} ms")
    else:
        print(f"\ne-stop click -> node: none of {args.clicks} clicks arrived")


if __name__ == "__main__":
    main()
