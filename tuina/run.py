"""``tuina run``: a dataflow under ``dora run``, the session on the terminal and dora's full
log in a file.

The terminal shows what a person follows: each node's own lines (nodes up, the instruction,
the grounding, the phases, faults, the summary) and the one error line of a node that fails.
dora's own records (DEBUG/INFO/WARN, dropped-message warnings, diagnostics, tracebacks, the
knock-on failures of the other nodes) go to the log only: ``dora.log`` in the session folder
when the session wrote a summary, else beside the graph under ``out/``. ``--verbose`` shows
everything live as well.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import IO, Any

# "12:41:48 stdout session: text", "12:41:06 ERROR  estop-button: daemon failed ..."
RECORD = re.compile(r"^(\d\d:\d\d:\d\d) (stdout|stderr|ERROR|WARN|INFO|DEBUG|TRACE)\s+"
                    r"([^:\s]+): ?(.*)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# a node's one error line (tuina.runtime.fail and the nodes' own error prints)
ERROR_LINE = re.compile(r"^tuina-[\w-]+: error: ")
SUMMARY_PATH = re.compile(r": +written to (\S+summary\.json)\s*$")  # the session node's line
# one of dora's JSON log records, written to a node's stdout by its own thread: it may land
# in the middle of a node's line, before that line's newline
DORA_RECORD = re.compile(r'\{"timestamp":"[^"]*","level":')


def shown(line: str) -> str | None:
    """The terminal's form of one line of ``dora run``'s output, None when it is only for
    the log."""
    match = RECORD.match(ANSI.sub("", line.rstrip("\n")))
    if match is None:
        return None
    clock, kind, node, text = match.groups()
    if kind == "stdout":
        if glued := DORA_RECORD.search(text):  # dora's own records are for the log only
            text = text[:glued.start()].rstrip()
        if not text.strip() or text.lstrip().startswith("{"):
            return None
        # the nodes name themselves; one name is enough
        for own in (f"{node}: ", f"tuina-{node}: "):
            if text.startswith(own):
                text = text[len(own):]
                break
        return f"{clock} {node}: {text}"
    if kind == "stderr" and ERROR_LINE.match(text):
        return f"{clock} {text}"
    return None


def summary_written(line: str) -> Path | None:
    """Where the session node says it wrote the summary, from its line of dora's output."""
    match = SUMMARY_PATH.search(ANSI.sub("", line.rstrip("\n")))
    return Path(match.group(1)) if match else None


def log_folder(graph: Path) -> Path:
    """Where a run's log goes until the session names its folder: ``out/`` beside the
    graph, as dora's own node logs."""
    return graph.resolve().parent / "out"


CONSOLE_ENV = {"SERVE": True, "ROUTINE": "", "INSTRUCTION": "", "STROKE_PX": ""}
WORLD_RGB_EVERY = 1  # every frame the world renders: the page takes IMAGE_HZ of them


def console_graph(graph: Path, folder: Path) -> Path:
    """``graph`` with its console serving the page and waiting for a person (no routine, no
    instruction of its own), written to ``folder``; its relative paths keep their meaning."""
    import yaml

    from tuina.evaluation.sessions import relocated

    spec = yaml.safe_load(graph.read_text())
    ids = {node["id"] for node in spec["nodes"]}
    if "console" not in ids:
        raise SystemExit(f"tuina run: error: {graph} has no node 'console'; --console needs "
                         "one (see dataflows/sim.yml)")
    for node in spec["nodes"]:
        if node["id"] == "console":
            node.setdefault("env", {}).update(CONSOLE_ENV)
        if node.get("path") == "tuina-world":
            node.setdefault("env", {})["RGB_EVERY"] = WORLD_RGB_EVERY
    out = folder / f"console-{graph.name}"
    out.write_text(yaml.safe_dump(relocated(spec, graph), sort_keys=False))
    return out


def parse_sets(sets: list[str]) -> dict[str, dict[str, Any]]:
    """``NODE.KEY=VALUE`` items as env overrides (node id -> keys); the value read as YAML
    (``0.5`` a number, ``person`` a string). ValueError naming the malformed item."""
    import yaml

    overrides: dict[str, dict[str, Any]] = {}
    for item in sets:
        target, equals, value = item.partition("=")
        node, dot, key = target.rpartition(".")
        if not (equals and dot and node and key):
            raise ValueError(f"--set {item!r} is not NODE.KEY=VALUE (e.g. --set world.BODY=person)")
        overrides.setdefault(node, {})[key] = yaml.safe_load(value) if value else ""
    return overrides


def overridden_graph(graph: Path, folder: Path, overrides: dict[str, dict[str, Any]]) -> Path:
    """``graph`` with its nodes' env changed by ``overrides``, written to ``folder``; SystemExit
    with one line for a node the graph lacks or a key its node does not read."""
    import yaml

    from tuina.evaluation.sessions import relocated, unapplied_override

    spec = yaml.safe_load(graph.read_text())
    if why := unapplied_override(spec, overrides):
        raise SystemExit(f"tuina run: error: {graph}: --set: {why}")
    for node in spec["nodes"]:
        node.setdefault("env", {}).update(overrides.get(node["id"], {}))
    out = folder / f"set-{graph.name}"
    out.write_text(yaml.safe_dump(relocated(spec, graph), sort_keys=False))
    return out


VIEWED = ("rgb", "depth", "camera_info", "targets", "target_pose", "trajectory", "robot_state",
          "command", "body_motion", "ground_truth", "events")
LATEST_ONLY = ("rgb", "depth")  # a frame not yet taken is replaced by the newer one


def with_viewer(spec: dict[str, Any], mode: str, rrd_file: Path | None = None
                ) -> dict[str, Any]:
    """A copy of the graph spec with a viewer node (tuina-viewer) subscribed to every output
    it shows; ``rrd_file`` for MODE save. A stream two nodes output is taken from the one
    downstream (the sim camera's noisy image, not the world's clean render it reads);
    every node's events are taken."""
    if any(node["id"] == "viewer" for node in spec["nodes"]):
        raise ValueError("the graph already has a node 'viewer'")
    sources: dict[str, str] = {}
    inputs: dict[str, Any] = {}
    arm = "fr3"
    for node in spec["nodes"]:
        arm = "baxter_left" if node.get("path") == "tuina-baxter" else arm
        reads = {str(v["source"] if isinstance(v, dict) else v)
                 for v in (node.get("inputs") or {}).values()}
        for output in node.get("outputs") or []:
            source = f"{node['id']}/{output}"
            if output == "events":
                inputs[f"events_{node['id']}"] = source
            elif output in VIEWED and (output not in sources or sources[output] in reads):
                sources[output] = source
    for output, source in sources.items():
        inputs[output] = {"source": source, "queue_size": 1} if output in LATEST_ONLY \
            else source
    env: dict[str, Any] = {"MODE": mode, "ARM": arm}
    if rrd_file is not None:
        env["RRD_FILE"] = str(rrd_file)
    return {**spec, "nodes": [*spec["nodes"], {"id": "viewer", "path": "tuina-viewer",
                                                "inputs": inputs, "env": env}]}


def viewer_graph(graph: Path, folder: Path, mode: str) -> tuple[Path, Path | None]:
    """``graph`` with a viewer node added, written to ``folder``; the .rrd it will write."""
    import yaml

    from tuina.evaluation.sessions import relocated

    spec = yaml.safe_load(graph.read_text())
    rrd = folder / f"viewer-{datetime.now():%Y%m%d-%H%M%S}.rrd" if mode == "save" else None
    try:
        spec = with_viewer(spec, mode, rrd)
    except ValueError as err:
        raise SystemExit(f"tuina run: error: {graph}: {err}; drop --viewer or the node") \
            from None
    out = folder / f"viewer-{graph.name}"
    out.write_text(yaml.safe_dump(relocated(spec, graph), sort_keys=False))
    return out, rrd


def run(graph: str, stop_after: str | None, verbose: bool = False,
        terminal: IO[str] | None = None, console: bool = False, viewer: str = "",
        sets: list[str] | None = None) -> int:
    """``dora run`` ``graph`` with this environment's node executables on PATH; its output
    filtered onto ``terminal`` (stdout) and kept whole in the log. Returns dora's status.
    ``sets`` (``NODE.KEY=VALUE``) change nodes' settings for this run; with ``console`` the
    graph's console serves its page and waits for a person; with ``viewer`` (save, spawn,
    serve) a viewer node shows the session in rerun."""
    terminal = terminal or sys.stdout
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    dora = shutil.which("dora", path=env["PATH"])
    if dora is None:
        print("tuina: error: the dora CLI is not installed; run `make setup`", file=sys.stderr)
        return 2
    from tuina.settings import graph_refusal

    path = Path(graph)
    if refusal := graph_refusal("run", path):
        print(refusal, file=sys.stderr)
        return 2
    try:
        overrides = parse_sets(sets or [])
    except ValueError as err:
        print(f"tuina run: error: {err}", file=sys.stderr)
        return 2
    folder = log_folder(path)
    folder.mkdir(parents=True, exist_ok=True)
    if overrides:
        path = overridden_graph(path, folder, overrides)
    if console:
        path = console_graph(path, folder)
    if viewer:
        path, rrd = viewer_graph(path, folder, viewer)
        if rrd is not None:
            print(f"tuina run: the viewer writes {rrd} (open it with `rerun {rrd}`)",
                  file=terminal, flush=True)
    cmd = [dora, "run", str(path)] + (["--stop-after", stop_after] if stop_after else [])
    log_path = folder / f"tuina-run-{datetime.now():%Y%m%d-%H%M%S}.log"
    summary: Path | None = None
    print(f"tuina run: {path.resolve()} (dora's full log: {log_path})", file=terminal,
          flush=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", bufsize=1)
        try:
            for line in proc.stdout:
                log.write(line)
                text = line.rstrip("\n") if verbose else shown(line)
                if text is not None:
                    print(text, file=terminal, flush=True)
                summary = summary_written(line) or summary
            code = proc.wait()
        except KeyboardInterrupt:
            proc.wait()  # dora stops the graph on the same Ctrl-C
            code = 130
    if summary is not None and summary.parent.is_dir():
        log_path = Path(shutil.move(str(log_path), summary.parent / "dora.log"))
    print(f"tuina run: dora exited {code}; its full log: {log_path}", file=terminal, flush=True)
    return code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tuina run`` options."""
    parser.add_argument("graph", help="dataflow YAML, e.g. dataflows/sim.yml")
    parser.add_argument("--stop-after", default=None, help="bound the run, e.g. 120s")
    parser.add_argument("--verbose", action="store_true",
                        help="show dora's whole output live (it always goes to the log file)")
    parser.add_argument("--console", action="store_true",
                        help="serve the console page (printed address) and wait for a person "
                        "instead of the graph's routine")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        metavar="NODE.KEY=VALUE",
                        help="change one node setting for this run (repeatable), e.g. --set "
                        "world.BODY=person --set grounding.BODY_MODEL=anny")
    parser.add_argument("--viewer", choices=("save", "spawn", "serve"), default="",
                        help="add a viewer node: save an .rrd beside the run's log, spawn "
                        "rerun's viewer, or serve its web viewer on loopback")


def main(args: Any) -> int:
    """``tuina run GRAPH``."""
    return run(args.graph, args.stop_after, args.verbose, console=args.console,
               viewer=args.viewer, sets=args.sets)
