"""The viewer node's cost to the control loop, and the export's speed, on this machine.

    .venv/bin/python benchmarks/viewer.py [--pairs 2]

1. Side by side, ``--pairs`` times: the sim graph's press (6 s at 6 N) without a viewer, then
   the same with the viewer node saving an .rrd (``tuina run --viewer save`` adds the same
   node). For each: the robot node's loop in wall time (rate, period jitter p99, state ->
   command latency), the session's figures, and the .rrd's size.
2. The last session with the viewer, recorded (``tuina record``) and exported with
   ``tuina export --mcap`` and ``--rrd``: the time each took against the session's length.
3. With ``--screenshot PNG``: a stroke of ST36 with the viewer saving its .rrd, served by
   rerun's web viewer on loopback and shot in headless chromium (software rendering): the
   picture in docs/viewer.md.
This is a measurement, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tuina.evaluation.sessions import loop_cells, relocated, run_session
from tuina.run import with_viewer

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STEP = {"INSTRUCTION": "press Zusanli with moderate pressure", "ROUTINE": ""}


def graph_with_viewer(folder: Path, rrd: Path | None) -> Path:
    """The sim graph, with a viewer node saving ``rrd`` when given."""
    sim = ROOT / "dataflows" / "sim.yml"
    spec = relocated(yaml.safe_load(sim.read_text()), sim)
    if rrd is not None:
        spec = with_viewer(spec, "save", rrd)
    path = folder / ("viewer.yml" if rrd else "plain.yml")
    path.write_text(yaml.safe_dump(spec))
    return path


def viewer_cpu(logs: Path) -> float:
    """The viewer node's CPU seconds (its own account at the end), NaN without one."""
    for log in logs.glob("*/log_viewer.jsonl"):
        for line in log.read_text().splitlines():
            if found := re.search(r"([0-9.]+) s of CPU", json.loads(line).get("msg", "")):
                return float(found.group(1))
    return float("nan")


def exports(folder: Path) -> list[str]:
    """Record one session, export it both ways; a line for each."""
    graph = folder / "record.yml"
    sim = ROOT / "dataflows" / "sim.yml"
    spec = relocated(yaml.safe_load(sim.read_text()), sim)
    for node in spec["nodes"]:
        if node["id"] == "console":
            node["env"].update(STEP)
        if node["id"] == "planner":
            node["env"]["PRESS_S"] = 6.0
    graph.write_text(yaml.safe_dump(spec))
    rec = folder / "rec"
    subprocess.run([str(BIN / "tuina"), "record", str(graph), "-o", str(rec), "--stop-after",
                    "150s"], capture_output=True, text=True, timeout=300, check=True)
    lines = []
    for flag, out in (("--mcap", folder / "s.mcap"), ("--rrd", folder / "s.rrd")):
        started = time.monotonic()
        proc = subprocess.run([str(BIN / "tuina"), "export", str(rec), flag, str(out)],
                              capture_output=True, text=True, timeout=600, check=True)
        took = time.monotonic() - started
        said = re.search(r"of a ([0-9.]+) s session, ([0-9.]+) MB", proc.stdout)
        length = float(said.group(1)) if said else float("nan")
        lines.append(f"export {flag}: {took:.1f} s for a {length:.1f} s session "
                     f"({took / length:.2f}x its length), {said.group(2) if said else '?'} MB")
    return lines


def screenshot(png: Path, folder: Path) -> None:
    """docs/viewer.md's picture: a stroke session's .rrd in rerun's web viewer."""
    import shutil

    from playwright.sync_api import sync_playwright

    rrd = folder / "stroke.rrd"
    stroke = {"INSTRUCTION": "stroke Zusanli with moderate pressure", "ROUTINE": ""}
    run_session(graph_with_viewer(folder, rrd), {"console": stroke}, folder, "stroke",
                "stroke")
    server = subprocess.Popen([str(BIN / "rerun"), "--serve-web", "--bind", "127.0.0.1",
                               "--port", "9877", "--web-viewer-port", "9191", str(rrd)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"),
                                         headless=True, args=["--no-sandbox",
                                                              "--use-angle=swiftshader",
                                                              "--enable-unsafe-swiftshader"])
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            time.sleep(3)
            page.goto("http://127.0.0.1:9191/?url=rerun%2Bhttp%3A%2F%2F127.0.0.1%3A9877"
                      "%2Fproxy")
            time.sleep(240)  # the wasm viewer loads the whole session, drawing in software
            page.screenshot(path=str(png))
            browser.close()
    finally:
        server.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--screenshot", type=Path, metavar="PNG",
                        help="only the picture of the viewer (docs/viewer.png)")
    args = parser.parse_args()
    if args.screenshot:
        with tempfile.TemporaryDirectory(prefix="tuina-bench-viewer-") as tmp:
            screenshot(args.screenshot.resolve(), Path(tmp))
        return
    print("| run | viewer | states (Hz) | state / command jitter p99 (ms) | latency p50 / p99 "
          "(ms) | force RMS (N) | .rrd (MB) | viewer CPU (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for pair in range(args.pairs):
        for viewer in (False, True):
            with tempfile.TemporaryDirectory(prefix="tuina-bench-viewer-") as tmp:
                folder = Path(tmp)
                rrd = folder / "s.rrd" if viewer else None
                result = run_session(graph_with_viewer(folder, rrd),
                                     {"planner": {"PRESS_S": 6.0}, "console": STEP}, folder,
                                     "run", "viewer" if viewer else "plain")
                loop = result["loop"]
                size = rrd.stat().st_size / 1e6 if rrd and rrd.exists() else float("nan")
                cpu = viewer_cpu(folder / "out")
            print(f"| {pair} | {'save' if viewer else 'none'} | {loop_cells(loop)} | "
                  f"{result.get('force_rms_error_n', float('nan')):.2f} | {size:.1f} | "
                  f"{cpu:.1f} |",
                  flush=True)
    with tempfile.TemporaryDirectory(prefix="tuina-bench-export-") as tmp:
        for line in exports(Path(tmp)):
            print(line)


if __name__ == "__main__":
    main()
