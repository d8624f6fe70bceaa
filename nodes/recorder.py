"""recorder: writes every input to a recording folder (one Arrow IPC file per topic).

Inputs: any; an input named ``<node>__<output>`` is recorded as topic ``node/output``
(``tuina record`` wires them; by hand, give each input a large ``queue_size`` so nothing is
dropped while the disk is busy).
Outputs: ``estop`` (only with MANDATORY: the recording failed, the robot must stop).

Batches reach the disk at least once a second, so a recorder killed with SIGKILL keeps
everything but the last second, readable. A recording that ends cleanly is marked complete
in its manifest; one that cannot be written (a full disk) stops cleanly, is marked
incomplete with the reason, and with MANDATORY the robot is told to stop.
"""

from __future__ import annotations

import resource
import sys
import time
from importlib import metadata
from pathlib import Path

from tuina.estop import estop_message
from tuina.recording import Recorder, RecordingError
from tuina.runtime import configure
from tuina.settings.recorder import PARAMS

PACKAGES = ("tuina", "dora-rs", "pyarrow", "numpy", "polars", "franky-control", "franky-sim",
            "mujoco", "open3d", "pin", "opencv-python-headless")


def versions() -> dict[str, str]:
    """Installed versions of the packages a recording depends on."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def topic_of(input_id: str) -> str:
    """``node__output`` -> ``node/output`` (any other id is recorded under ``recorder/``)."""
    node, sep, output = input_id.partition("__")
    return f"{node}/{output}" if sep and node and output else f"recorder/{input_id}"


def recording_folder(cfg: dict) -> Path:
    """The configured folder, new; else one error line and exit 2."""
    if not cfg["RECORDING_DIR"]:
        print("tuina-recorder: error: RECORDING_DIR is empty; set it to a new folder, e.g. "
              "recordings/my-session", file=sys.stderr, flush=True)
        sys.exit(2)
    folder = Path(cfg["RECORDING_DIR"])
    if (folder / "manifest.json").exists():
        print(f"tuina-recorder: error: {folder} already holds a recording; choose a new "
              "folder (-o)", file=sys.stderr, flush=True)
        sys.exit(2)
    return folder


def new_manifest(cfg: dict) -> dict:
    """The manifest a recording starts with: the graph, versions, the topics, incomplete."""
    graph_file = Path(cfg["GRAPH_FILE"]) if cfg["GRAPH_FILE"] else None
    return {
        "graph_file": str(graph_file) if graph_file else "",
        "graph": graph_file.read_text() if graph_file and graph_file.is_file() else "",
        "versions": versions(),
        "start_wall_ns": time.time_ns(),
        "complete": False,
        "topics": {t: {"count": 0, "lost": 0, "file": ""} for t in cfg["TOPICS"].split(",")
                   if t},
    }


def account(recorder: Recorder, folder: Path, wall_s: float) -> str:
    """One line: messages, topics, size, rate and the recorder's own CPU."""
    counts = {t: v["count"] for t, v in recorder.manifest["topics"].items()}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 1e6
    return (f"tuina-recorder: {sum(counts.values())} messages on {len(counts)} topics, "
            f"{size:.1f} MB in {wall_s:.1f} s ({size / wall_s:.1f} MB/s), CPU "
            f"{100 * (usage.ru_utime + usage.ru_stime) / wall_s:.1f}% of one core (user "
            f"{usage.ru_utime:.1f} s, system {usage.ru_stime:.1f} s); {folder}")


def main() -> None:
    """Record until the graph stops."""
    cfg = configure("recorder", PARAMS)
    folder = recording_folder(cfg)
    from dora import Node

    recorder = Recorder(folder, new_manifest(cfg))
    started = time.monotonic()
    node = Node()
    failed = ""
    ending = {name for name in cfg["END_WITH_INPUTS"].split(",") if name}
    closed: set[str] = set()
    for event in node:  # to the end: STOP, every sender gone, or END_WITH_INPUTS closed
        if event["type"] == "STOP":
            break
        if event["type"] == "INPUT_CLOSED":
            closed.add(event["id"])
            if ending and ending <= closed:
                break
            continue
        if event["type"] != "INPUT" or failed:
            continue
        try:
            recorder.add(topic_of(event["id"]), event["value"], event["metadata"])
        except (OSError, RecordingError) as err:
            failed = f"recording stopped: {err}"
            print(f"tuina-recorder: error: {failed}", flush=True)
            try:
                recorder.close(complete=False, reason=failed)
            except (OSError, RecordingError):
                pass  # the manifest keeps its last good state
            if cfg["MANDATORY"]:
                node.send_output("estop", *estop_message(failed, "recorder"))
    if not failed:
        recorder.close(complete=True)
        print(account(recorder, folder, time.monotonic() - started), flush=True)


if __name__ == "__main__":
    main()
