"""``tuina record``: run a graph with a recorder wired to its outputs (like ``dora record``)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tuina.recording import input_id

RECORDER_ID = "recorder"
SESSION_PATH = "tuina-session"  # its summary.json goes into the recording folder
QUEUE_SIZE = 10_000  # a busy disk must never make dora drop a message
ROBOT_PATHS = ("tuina-franka", "tuina-baxter")


def graph_topics(spec: dict[str, Any]) -> list[str]:
    """Every ``node/output`` a graph produces."""
    return [f"{node['id']}/{output}" for node in spec.get("nodes", [])
            for output in node.get("outputs", [])]


def with_recorder(spec: dict[str, Any], topics: list[str], folder: Path, graph_file: Path,
                  mandatory: bool = False) -> dict[str, Any]:
    """A copy of the graph spec with a recorder node subscribed to ``topics``; the session
    node writes its summary into the recording folder (``summary.json``)."""
    known = graph_topics(spec)
    unknown = [t for t in topics if t not in known]
    if unknown:
        raise ValueError(f"the graph has no output {', '.join(unknown)}; it has: "
                         f"{', '.join(known)}")
    if any(node["id"] == RECORDER_ID for node in spec.get("nodes", [])):
        raise ValueError(f"the graph already has a node '{RECORDER_ID}'")
    dynamic = {node["id"] for node in spec["nodes"] if node.get("path") == "dynamic"}
    nodes = [dict(node) for node in spec["nodes"]]
    for node in nodes:
        if node.get("path") == SESSION_PATH:
            node["env"] = {**(node.get("env") or {}), "RECORDINGS_DIR": str(folder.resolve()
                                                                          .parent),
                           "SESSION": folder.name}
    if mandatory:  # a recording that fails stops every robot (their estop* inputs)
        for node in nodes:
            if node.get("path") in ROBOT_PATHS:
                node["inputs"] = {**(node.get("inputs") or {}),
                                  "estop_recorder": f"{RECORDER_ID}/estop"}
    out = dict(spec)
    out["nodes"] = [*nodes, {
        "id": RECORDER_ID,
        "path": "tuina-recorder",
        "inputs": {input_id(t): {"source": t, "queue_size": QUEUE_SIZE,
                                 "queue_policy": "backpressure"} for t in topics},
        "outputs": ["estop"],
        "env": {"RECORDING_DIR": str(folder.resolve()), "GRAPH_FILE": str(graph_file.resolve()),
                "MANDATORY": mandatory, "TOPICS": ",".join(topics),
                # the recording ends when these close; dynamic nodes may never connect
                "END_WITH_INPUTS": ",".join(input_id(t) for t in topics
                                            if t.split("/")[0] not in dynamic)},
    }]
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tuina record`` options."""
    parser.add_argument("graph", help="dataflow YAML, e.g. dataflows/sim.yml")
    parser.add_argument("--topics", default=None,
                        help="node/output,... to record (default: every output)")
    parser.add_argument("-o", "--output", default=None,
                        help="recording folder (default recordings/<graph>-<date>-<time>)")
    parser.add_argument("--stop-after", default=None, help="bound the run, e.g. 60s")
    parser.add_argument("--mandatory", action="store_true",
                        help="the session must not go on unrecorded: a failed recording e-stops "
                        "the robot")
    parser.add_argument("--verbose", action="store_true",
                        help="show dora's whole output as it comes (else the nodes' own lines; "
                        "dora's log goes into the recording as dora.log)")


def main(args: Any) -> int:
    """Record a run of ``args.graph``; the folder in ``args.output``."""
    from tuina.settings import graph_refusal

    graph = Path(args.graph)
    if refusal := graph_refusal("record", graph):
        print(refusal, file=sys.stderr)
        return 2
    spec = yaml.safe_load(graph.read_text())
    topics = ([t.strip() for t in args.topics.split(",") if t.strip()] if args.topics
              else graph_topics(spec))
    folder = Path(args.output or f"recordings/{graph.stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    if folder.exists() and any(folder.iterdir()):
        print(f"tuina record: error: {folder} exists and is not empty; choose a new -o folder",
              file=sys.stderr)
        return 2
    try:
        recorded = with_recorder(spec, topics, folder, graph, mandatory=args.mandatory)
    except ValueError as err:
        print(f"tuina record: error: {err}", file=sys.stderr)
        return 2
    status = run_beside(graph, recorded, "record", args.stop_after, quiet=not args.verbose)
    print(f"tuina record: {folder}")
    return status


def run_beside(graph: Path, spec: dict[str, Any], kind: str,
               stop_after: str | None = None, quiet: bool = False) -> int:
    """``dora run`` a rewritten graph from a hidden file next to the original (so its
    relative paths keep their meaning), with this environment's executables on PATH.
    ``quiet``: as ``tuina run`` shows it (the nodes' own lines on the terminal, dora's whole
    output in its log, ``dora.log`` beside the session's summary)."""
    path = graph.parent / f".{graph.stem}.{kind}.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    if quiet:
        from tuina.run import run

        try:
            return run(str(path), stop_after)
        finally:
            path.unlink(missing_ok=True)
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(bin_dir / "dora"), "run", str(path)]
    if stop_after:
        cmd += ["--stop-after", stop_after]
    try:
        return subprocess.call(cmd, env=env)
    finally:
        path.unlink(missing_ok=True)
