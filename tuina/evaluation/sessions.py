"""Closed-loop evaluation sessions: the sim graph run under dora with some env changed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tuina import jsontext
from tuina.config import ROOT_ENV
from tuina.settings import node_settings


def relocated(spec: dict[str, Any], graph: Path) -> dict[str, Any]:
    """The graph ``spec`` read from the file ``graph``, to be written elsewhere: every node's
    relative paths (rig, extrinsics, recordings) keep meaning what they meant beside the
    original (TUINA_ROOT, as on a machine of a distributed graph)."""
    root = str(graph.resolve().parent)
    for node in spec["nodes"]:
        if node.get("path") != "dynamic":
            node.setdefault("env", {}).setdefault(ROOT_ENV, root)
    return spec


class OverrideRefused(ValueError):
    """An evaluation's env override names a node the graph lacks or a key its node does not
    read: applied, it would change nothing and the evaluation would measure something else."""


def unapplied_override(spec: dict[str, Any], overrides: dict[str, dict[str, Any]]
                       ) -> str | None:
    """Why ``overrides`` (node id -> env keys) cannot be applied to the graph ``spec``: a node
    id the graph lacks, or a key the node's declared settings lack; None when every one can."""
    nodes = {node["id"]: node for node in spec["nodes"]}
    for node_id, env in overrides.items():
        if node_id not in nodes:
            return (f"the override names node {node_id!r}, which the graph lacks (its nodes: "
                    f"{', '.join(nodes)}); name one of them")
        params = node_settings(str(nodes[node_id].get("path", "")))
        if params is None:
            continue  # a node that declares no settings (not one of ours) takes any key
        known = {p.key for p in params}
        if unknown := sorted(set(env) - known):
            return (f"the override sets {unknown[0]} on node {node_id!r}, which does not read "
                    f"it; its keys: {', '.join(sorted(known))}")
    return None


def session_graph(graph: Path, overrides: dict[str, dict[str, Any]], folder: Path,
                  name: str) -> Path:
    """A copy of ``graph`` with ``overrides`` (node id -> env keys) that writes its session
    summary to ``folder/name``; relative paths keep pointing where they did. Raises
    ``OverrideRefused`` for an override it cannot apply."""
    spec = relocated(yaml.safe_load(graph.read_text()), graph)
    if why := unapplied_override(spec, overrides):
        raise OverrideRefused(f"{graph}: {why}")
    for node in spec["nodes"]:
        env = node.setdefault("env", {})
        env.update(overrides.get(node["id"], {}))
        if node["id"] == "session":
            env.update(RECORDINGS_DIR=str(folder), SESSION=name)
    path = folder / f"{name}.yml"
    path.write_text(yaml.safe_dump(spec))
    return path


def robot_loop(log_dirs: list[Path]) -> dict[str, float]:
    """The robot node's wall-clock account of the control loop (``franka: loop ...``, printed
    when it stops) from dora's logs of one run: rates, period jitter, latency."""
    for log_dir in log_dirs:
        log = log_dir / "log_robot.jsonl"
        if not log.exists():
            continue
        for line in log.read_text().splitlines():
            message = json.loads(line).get("msg", "")
            if message.startswith("franka: loop "):
                fields = (item.split(" ") for item in message[len("franka: loop "):].split(", "))
                return {key: float(value) for key, value in fields}
    return {}


def loop_cells(loop: dict[str, float]) -> str:
    """A robot loop account as Markdown table cells: states (Hz) | state / command jitter
    p99 (ms) | latency p50 / p99 (ms)."""
    nan = float("nan")
    return (f"{loop.get('state_hz', nan):.1f} | {loop.get('state_jitter_p99_ms', nan):.2f} / "
            f"{loop.get('command_jitter_p99_ms', nan):.2f} | "
            f"{loop.get('latency_p50_ms', nan):.2f} / {loop.get('latency_p99_ms', nan):.2f}")


def run_group(cmd: list[str], timeout_s: float, **kwargs: Any
              ) -> tuple[subprocess.CompletedProcess, bool]:
    """Run ``cmd`` (output captured) in a process group of its own; past ``timeout_s`` the
    whole group is killed, dora's nodes with it (killing ``dora run`` alone leaves them
    running). Returns the result and whether it ran over."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout_s)
        over = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        over = True
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), over


def run_session(graph: Path, overrides: dict[str, dict[str, Any]], folder: Path, name: str,
                label: str) -> dict[str, Any]:
    """``dora run`` the changed graph; the session node's summary, with the robot node's
    wall-clock loop account under ``loop``."""
    path = session_graph(graph, overrides, folder, name)
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    logs = folder / "out"  # dora writes one folder of node logs per run here
    before = set(logs.iterdir()) if logs.exists() else set()
    proc, over = run_group([str(bin_dir / "dora"), "run", str(path), "--stop-after", "150s"],
                           300, env=env)
    summary = folder / name / "summary.json"
    if not summary.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        why = "ran past 300 s and was killed" if over else "wrote no summary"
        raise RuntimeError(f"the {label} session {why}: " + " | ".join(tail))
    result = jsontext.figures(json.loads(summary.read_text()), absent=("released_t",))
    result["loop"] = robot_loop(sorted(set(logs.iterdir()) - before) if logs.exists() else [])
    return result


def progress_to_stderr(line: str) -> None:
    """Progress beside ``--json``: stdout holds only the JSON object."""
    print(line, file=sys.stderr, flush=True)


def evaluate_graph(name: str, args: Any, run: Callable[[Path, Callable[[str], None]], dict],
                   table: Callable[[dict], str], errors: tuple[type[Exception], ...]) -> int:
    """``tuina eval NAME`` on the graph in ``args.graph``: progress and a table, or one JSON
    object with ``args.json``; one error line and a non-zero status when it cannot run."""
    graph = Path(args.graph)
    if not graph.is_file():
        print(f"tuina eval {name}: error: no graph at {graph}; pass --graph dataflows/sim.yml "
              "from the project folder", file=sys.stderr)
        return 2
    try:
        summary = run(graph, progress_to_stderr if args.json else print)
    except (OverrideRefused, *errors) as err:
        print(f"tuina eval {name}: error: {err}", file=sys.stderr)
        return 1
    print(jsontext.dumps(summary) if args.json else table(summary))
    return 0



def unknown_choice(evaluation: str, what: str, asked: list[str] | None,
                   known: list[str]) -> bool:
    """True (after one error line naming the choices) when ``asked`` holds a name not in
    ``known``."""
    unknown = [name for name in asked or [] if name not in known]
    if unknown:
        print(f"tuina eval {evaluation}: error: unknown {what} {unknown[0]!r}; choose from: "
              + "; ".join(known), file=sys.stderr)
    return bool(unknown)
