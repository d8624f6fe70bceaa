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

NODE_MODULES = ("world", "camera", "operator", "grounding", "pose_fit", "icp_tracker",
                "planner", "force_controller", "franka", "realsense", "baxter", "session",
                "recorder", "replayer")


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tuina`` command."""
    parser = argparse.ArgumentParser(prog="tuina", description=markdown(__doc__))
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a dataflow (dora run) with the tuina nodes on PATH")
    run.add_argument("graph", help="dataflow YAML, e.g. dataflows/sim.yml")
    run.add_argument("--stop-after", default=None, help="bound the run, e.g. 120s")
    run.add_argument("--verbose", action="store_true",
                     help="show dora's whole output live (it always goes to the log file)")
    sub.add_parser("contract", help="print the message contract as a Markdown table")
    sub.add_parser("nodes", help="print every node's inputs, outputs and env keys")
    cal = sub.add_parser("calibrate", help="solve the camera extrinsics (marker on the arm)")
    cal.add_argument("graph", help="dataflow whose camera is calibrated, e.g. dataflows/sim.yml")
    cal.add_argument("--poses", type=int, default=20, help="arm poses to visit (default 20)")
    cal.add_argument("--seed", type=int, default=0, help="seed of the poses and depth noise")
    cal.add_argument("--out", default=None,
                     help="extrinsics file (default: the camera node's EXTRINSICS_FILE)")
    cal.add_argument("--pairs", default=None,
                     help="solve recorded poses instead (CSV/Parquet: ee_x..ee_qw, marker_x..z)")
    cal.add_argument("--marker-in-ee", type=float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                     help="marker centre in the end-effector frame, m (with --pairs)")
    cal.add_argument("--save-pairs", default=None, help="also write the collected poses (CSV)")
    cal.add_argument("--no-noise", action="store_true", help="sim: skip the depth noise model")
    ev = sub.add_parser("eval", help="reproducible evaluations in the simulated world")
    ev_sub = ev.add_subparsers(dest="evaluation", required=True)
    perception = ev_sub.add_parser("perception", help="VBRM positioning protocol: 9 targets, "
                                   "near/middle/far, calibration, normals")
    perception.add_argument("--json", action="store_true", help="print one JSON object")
    perception.add_argument("--seed", type=int, default=0)
    perception.add_argument("--poses", type=int, default=20, help="calibration poses")
    perception.add_argument("--trials", type=int, default=3, help="noisy frames per target")
    tracking = ev_sub.add_parser("tracking", help="follow a moving body: registration error, "
                                 "depth->motion time, tool-to-acupoint distance in contact")
    tracking.add_argument("--json", action="store_true", help="print one JSON object")
    tracking.add_argument("--seed", type=int, default=0)
    tracking.add_argument("--graph", default="dataflows/sim.yml",
                          help="the sim graph whose tracker and world are evaluated")
    tracking.add_argument("--frames-only", action="store_true",
                          help="only the tracker on rendered frames, no closed-loop sessions")
    force = ev_sub.add_parser("force", help="contact scenarios: steady press, stroke, moving "
                              "body; force errors, overshoot, loop rate and jitter")
    force.add_argument("--json", action="store_true", help="print one JSON object")
    force.add_argument("--graph", default="dataflows/sim.yml", help="the sim graph evaluated")
    safety = ev_sub.add_parser("safety", help="fault injection mid-press: nodes killed or "
                               "stalled, sensor faults, a body jerk, the e-stop; true force, "
                               "release time and tool motion after release")
    safety.add_argument("--json", action="store_true", help="print one JSON object")
    safety.add_argument("--graph", default="dataflows/sim.yml", help="the sim graph evaluated")
    safety.add_argument("--scenario", action="append",
                        help="run only this scenario (repeatable); default: all")
    coverage = ev_sub.add_parser("coverage", help="every atlas acupoint asked for in a real "
                                 "session each: pressed (errors on the truth), refused (the "
                                 "reason) or wrong")
    coverage.add_argument("--json", action="store_true", help="print one JSON object")
    coverage.add_argument("--graph", default="dataflows/sim.yml", help="the sim graph")
    coverage.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (default 1)")
    coverage.add_argument("--point", action="append",
                          help="only this acupoint code (repeatable); default: all")
    gr = ev_sub.add_parser("grounding", help="acupoint grounding success at IoU 0.3/0.5/0.75 "
                           "(HMR-1 Table 2) on a MedMassage-format dataset or sim images")
    source = gr.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", default=None, help="dataset folder (annotations.json)")
    source.add_argument("--sim", type=int, default=0, metavar="N",
                        help="render N labelled images of the sim world instead")
    gr.add_argument("--backend", choices=("atlas", "vlm"), default="atlas")
    gr.add_argument("--model-path", default=None, help="vlm: local checkpoint folder")
    gr.add_argument("--save", default=None, help="--sim: also write the images as a dataset")
    gr.add_argument("--seed", type=int, default=0)
    gr.add_argument("--json", action="store_true", help="print one JSON object")
    aug = sub.add_parser("augment", help="new image/QA pairs by random crops and rotations "
                         "(HMR-1's augmentation), boxes carried along")
    aug.add_argument("dataset", help="MedMassage-format dataset folder")
    aug.add_argument("-o", "--output", required=True, help="folder for the augmented dataset")
    aug.add_argument("--copies", type=int, default=10, help="new images per image (default 10)")
    aug.add_argument("--max-rotation-deg", type=float, default=30.0)
    aug.add_argument("--min-crop", type=float, default=0.7,
                     help="smallest crop side, as a fraction of the image side")
    aug.add_argument("--seed", type=int, default=0)
    rec = sub.add_parser("record", help="run a graph and record its outputs (one Arrow IPC "
                         "file per topic + manifest)")
    rec.add_argument("graph", help="dataflow YAML, e.g. dataflows/sim.yml")
    rec.add_argument("--topics", default=None,
                     help="node/output,... to record (default: every output)")
    rec.add_argument("-o", "--output", default=None,
                     help="recording folder (default recordings/<graph>-<date>-<time>)")
    rec.add_argument("--stop-after", default=None, help="bound the run, e.g. 60s")
    rec.add_argument("--mandatory", action="store_true",
                     help="the session must not go on unrecorded: a failed recording e-stops "
                          "the robot")
    rep = sub.add_parser("replay", help="run a graph with some nodes' outputs from a recording")
    rep.add_argument("recording", help="recording folder, e.g. recordings/my-session")
    rep.add_argument("--graph", default=None, help="graph to run (default: the recorded one)")
    rep.add_argument("--replace", default=None, help="node,... whose outputs come from the "
                     "recording (default: the nodes facing hardware or the sim world)")
    rep.add_argument("--speed", type=float, default=1.0,
                     help="0: as fast as the graph goes, 0.5, 1 (recorded timing), 2")
    rep.add_argument("--loop", action="store_true", help="start over at the end")
    rep.add_argument("-o", "--output", default=None,
                     help="record the replayed run here (as tuina record does)")
    rpt = sub.add_parser("report", help="counts, rates, gaps, latencies, plots and an HTML "
                         "page of a recording")
    rpt.add_argument("recording", help="recording folder")
    rpt.add_argument("-o", "--output", default=None,
                     help="where the plots and report.html go (default <recording>/report)")
    stop = sub.add_parser("estop", help="stop the robot of the running graph now (the "
                          "operator's e-stop; the robot moves again only after a restart)")
    stop.add_argument("--node", default="estop-button",
                      help="the graph's dynamic e-stop node (default estop-button)")
    stop.add_argument("--reason", default="operator", help="why, for the robot's log line")
    args = parser.parse_args(argv)
    if args.command == "record":
        from tuina.record import main as record_main

        return record_main(args)
    if args.command == "replay":
        from tuina.replay import main as replay_main

        return replay_main(args)
    if args.command == "report":
        from tuina.report import main as report_main

        return report_main(args)
    if args.command == "augment":
        from tuina.augment import main as augment_main

        return augment_main(args)
    if args.command == "estop":
        from tuina.estop import main as estop_main

        return estop_main(args)
    if args.command == "eval":
        if args.evaluation == "force":
            from tuina.evaluation import force as force_eval

            return force_eval.main(args)
        if args.evaluation == "safety":
            from tuina.evaluation import safety as safety_eval

            return safety_eval.main(args)
        if args.evaluation == "coverage":
            from tuina.evaluation import coverage as coverage_eval

            return coverage_eval.main(args)
        if args.evaluation == "grounding":
            from tuina.evaluation import grounding as grounding_eval

            return grounding_eval.main(args)
        if args.evaluation == "tracking":
            from tuina.evaluation import tracking as tracking_eval

            return tracking_eval.main(args)
        from tuina.evaluation import perception as perception_eval

        return perception_eval.main(args)
    if args.command == "calibrate":
        from tuina.calibrate import main as calibrate_main

        if args.pairs and args.marker_in_ee is None:
            parser.error("--pairs needs --marker-in-ee X Y Z (the marker centre on the tool)")
        return calibrate_main(args)
    if args.command == "run":
        from tuina.run import run as run_graph

        return run_graph(args.graph, args.stop_after, args.verbose)
    if args.command == "contract":
        print(contract_table())
    elif args.command == "nodes":
        print(nodes_doc())
    return 0


if __name__ == "__main__":
    sys.exit(main())
