"""The ``tuina`` command line: the project's own tools around the dataflows."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import sys
from pathlib import Path

from tuina.config import table
from tuina.messages import STREAMS

NODE_MODULES = ("world", "camera", "console", "grounding", "pose_fit", "icp_tracker",
                "planner", "force_controller", "franka", "realsense", "baxter", "session",
                "recorder", "replayer", "viewer")


def contract_table() -> str:
    """Markdown table of every stream of the message contract."""
    rows = ["| stream | Arrow payload | units | frame | what |", "|---|---|---|---|---|"]
    rows += [f"| `{s.name}` | {s.payload} | {s.units} | {s.frame} | {s.description} |"
             for s in STREAMS]
    return "\n".join(rows)


def nodes_doc() -> str:
    """Markdown section per node: its docstring (inputs, outputs) and env table."""
    parts = []
    for name in NODE_MODULES:
        settings = importlib.import_module(f"tuina.settings.{name}")
        # the node's docstring read from its source: the tools never import a node
        source = importlib.util.find_spec(f"tuina.nodes.{name}").origin
        doc = ast.get_docstring(ast.parse(Path(source).read_text())) or ""
        title = f"tuina-{name.replace('_', '-')}"
        parts.append(f"### `{title}`\n\n{markdown(doc)}\n\n{table(settings.PARAMS)}\n")
    return "\n".join(parts)


def markdown(docstring: str) -> str:
    """A docstring as Markdown: reStructuredText's ``literal`` becomes `literal`."""
    return docstring.strip().replace("``", "`")


COMMANDS = {  # name: (module with add_arguments and main, one-line help)
    "run": ("tuina.run", "run a dataflow (dora run) with the tuina nodes on PATH"),
    "calibrate": ("tuina.calibrate", "solve the camera extrinsics (marker on the arm)"),
    "eval": ("tuina.evaluation", "reproducible evaluations in the simulated world"),
    "record": ("tuina.recording.record", "run a graph and record its outputs (one Arrow IPC "
               "file per topic + manifest)"),
    "replay": ("tuina.recording.replay", "run a graph with some nodes' outputs from a "
               "recording"),
    "report": ("tuina.recording.report", "counts, rates, gaps, latencies, plots and an HTML "
               "page of a recording"),
    "export": ("tuina.recording.export", "a recording as MCAP (Foxglove's schemas) or as a "
               "rerun recording (.rrd)"),
    "estop": ("tuina.estop", "stop the robot of the running graph now (the operator's e-stop; "
                             "the robot moves again only after a restart)"),
    "augment": ("tuina.augment", "new image/QA pairs by random crops and rotations (HMR-1's "
                                 "augmentation), boxes carried along"),
    "contract": ("tuina.cli", "print the message contract as a Markdown table"),
    "nodes": ("tuina.cli", "print every node's inputs, outputs and env keys"),
}


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line's arguments, as ``main`` reads them (argparse exits on bad ones)."""
    words = [a for a in argv if not a.startswith("-")]
    parser = argparse.ArgumentParser(prog="tuina", description=markdown(__doc__))
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, text) in COMMANDS.items():
        child = sub.add_parser(name, help=text, description=text)
        if words and name == words[0] and module_name != "tuina.cli":
            module = importlib.import_module(module_name)
            if name == "eval":
                module.add_arguments(child, words[1] if len(words) > 1 else None)
            else:
                module.add_arguments(child)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tuina`` command: each command's options and code live in its
    own module, imported only when that command runs (``tuina --help`` imports none)."""
    args = parse(sys.argv[1:] if argv is None else list(argv))
    if args.command == "contract":
        print(contract_table())
        return 0
    if args.command == "nodes":
        print(nodes_doc())
        return 0
    return importlib.import_module(COMMANDS[args.command][0]).main(args)

if __name__ == "__main__":
    sys.exit(main())
