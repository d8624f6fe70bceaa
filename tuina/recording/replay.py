"""``tuina replay``: run a graph with some nodes' outputs coming from a recording.

The replaced nodes leave the graph; a replayer node sends their recorded outputs instead.
Every node fed by the replayer gets them on one input, ``replay`` (the node's event loop
hands each message on as the input it stands for), so dora's queues keep the replayer's
order. Each node's order is the one it met its inputs in when recorded: every output of a
tuina node carries the ``seq`` of the latest message on each of its inputs and the input
that triggered it (metadata ``inputs`` / ``trigger``), and before each recorded output come
the messages it was computed from, the trigger last (``feed_order``). At ``--speed 0`` every
node left in the graph also holds its live inputs to that order (``tuina.runtime.ReplayGate``),
so the whole graph repeats itself whatever dora's scheduling.
"""

from __future__ import annotations

import argparse
import heapq
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from tuina.recording import RecordingError, read_manifest, read_topic, topic_problem
from tuina.runtime import REPLAY_INPUT, REPLAY_ORDER_ENV, parse_lineage

REPLAYER_ID = "replayer"
HARDWARE_PATHS = ("tuina-world", "tuina-camera", "tuina-franka", "tuina-realsense",
                  "tuina-baxter", "tuina-console")  # and the person at the console
FEED_QUEUE = 1000  # with backpressure: 10x this before dora drops anything


def source_of(mapping: Any) -> str:
    """The ``node/output`` (or ``dora/timer/...``) an input mapping reads."""
    return mapping["source"] if isinstance(mapping, dict) else str(mapping)


def default_replaced(spec: dict[str, Any]) -> list[str]:
    """The nodes a replay stands in for by default: those facing hardware, the sim world or
    the person (the console)."""
    return [n["id"] for n in spec["nodes"] if n.get("path") in HARDWARE_PATHS]


def replay_graph(spec: dict[str, Any], replaced: list[str],
                 recorded: set[str]) -> tuple[dict[str, Any], dict[str, list[tuple[str, str]]]]:
    """The graph with ``replaced`` nodes swapped for a replayer, and per fed node the
    (topic, input) pairs it takes from the recording. ValueError lists what is missing."""
    ids = {n["id"] for n in spec["nodes"]}
    unknown = [r for r in replaced if r not in ids]
    if unknown:
        raise ValueError(f"the graph has no node {', '.join(unknown)}; it has "
                         f"{', '.join(sorted(ids))}")
    feeds: dict[str, list[tuple[str, str]]] = {}
    missing: list[str] = []
    nodes = []
    for node in spec["nodes"]:
        if node["id"] in replaced:
            continue
        node = dict(node)
        inputs = {}
        for name, mapping in (node.get("inputs") or {}).items():
            source = source_of(mapping)
            if source.split("/")[0] in replaced:
                if source not in recorded:
                    missing.append(f"{source} (for {node['id']}/{name})")
                feeds.setdefault(node["id"], []).append((source, name))
            else:
                inputs[name] = mapping
        if node["id"] in feeds:
            inputs[REPLAY_INPUT] = {"source": f"{REPLAYER_ID}/to_{node['id']}",
                                    "queue_size": FEED_QUEUE, "queue_policy": "backpressure"}
        node["inputs"] = inputs
        nodes.append(node)
    if missing:
        raise ValueError("the recording lacks topics this graph needs: " + ", ".join(missing))
    # a dynamic node (the e-stop button) that nothing left in the graph reads would only
    # keep dora waiting for a process that never comes
    read = {source_of(m).split("/")[0] for n in nodes for m in (n.get("inputs") or {}).values()}
    nodes = [n for n in nodes if n.get("path") != "dynamic" or n["id"] in read]
    out = dict(spec)
    out["nodes"] = [*nodes, {"id": REPLAYER_ID, "path": "tuina-replayer",
                             "outputs": [f"to_{n}" for n in feeds]}]
    return out, feeds


def feed_order(rows: dict[str, pa.Table], outputs: list[dict[str, str]]) -> list[tuple[str, int]]:
    """(input, row) in the order a node must see them to repeat its recorded ``outputs``
    (their ``inputs`` / ``trigger`` metadata, in output order); ``rows``: the recorded
    messages of each input, in seq order."""
    seqs = {name: table.column("seq").to_pylist() for name, table in rows.items()}
    recv = {name: table.column("recv_ns").to_pylist() for name, table in rows.items()}
    done = dict.fromkeys(rows, 0)
    order: list[tuple[str, int]] = []

    def pending(name: str, up_to: int) -> list[tuple[str, int]]:
        items = []
        while done[name] < len(seqs[name]) and seqs[name][done[name]] <= up_to:
            items.append((name, done[name]))
            done[name] += 1
        return items

    for out in outputs:
        lineage = parse_lineage(out.get("inputs", ""))
        trigger = out.get("trigger", "")
        if trigger in rows and trigger in lineage:
            # triggers since the last output produced nothing: they came before the updates
            # this output needed (after those, they would have produced something)
            order += pending(trigger, lineage[trigger] - 1)
        updates = [item for name in sorted(lineage) if name in rows and name != trigger
                   for item in pending(name, lineage[name])]
        order += sorted(updates, key=lambda item: recv[item[0]][item[1]])
        if trigger in rows and trigger in lineage:
            order += pending(trigger, lineage[trigger])
    rest = [(name, i) for name in rows for i in range(done[name], len(seqs[name]))]
    rest.sort(key=lambda item: recv[item[0]][item[1]])
    return order + rest


def sent_order(outputs: list[tuple[int, dict[str, str]]]) -> list[dict[str, str]]:
    """A node's recorded outputs ((receive time, metadata) of every output topic) in the
    order it sent them. They reach the recorder on separate streams, so their receive times
    may cross (an event sent after a command can arrive first); each input's seq in their
    lineage only ever grows, so its sum orders them, receive time breaking ties."""
    ordered = sorted(outputs, key=lambda item: (sum(parse_lineage(item[1]["inputs"]).values()),
                                                item[0]))
    return [meta for _, meta in ordered]


def plan(folder: Path, manifest: dict[str, Any], spec: dict[str, Any],
         replaced: list[str]) -> dict[str, list[tuple[str, int, str, int]]]:
    """Per node left in the graph, every recorded message on its inputs as (topic, row,
    input, seq), in the order the node must meet them to repeat its recorded outputs (read
    from the recording's seq, receive time and metadata columns; payloads stay on disk)."""
    out: dict[str, list[tuple[str, int, str, int]]] = {}
    tables: dict[tuple[str, tuple[str, ...]], pa.Table] = {}

    def table_of(topic: str, columns: tuple[str, ...]) -> pa.Table:
        # a camera topic feeds several nodes: each topic is read once
        if (topic, columns) not in tables:
            tables[topic, columns] = read_topic(folder, topic, partial=True, columns=columns)
        return tables[topic, columns]

    for node_spec in spec["nodes"]:
        node = node_spec["id"]
        if node in replaced:
            continue
        topic_of = {name: source_of(m) for name, m in (node_spec.get("inputs") or {}).items()
                    if manifest["topics"].get(source_of(m), {}).get("count", 0) > 0}
        if not topic_of:
            continue
        rows = {name: table_of(topic, ("recv_ns",)) for name, topic in topic_of.items()}
        recorded_outputs = []
        for output in node_spec.get("outputs", []):
            topic = f"{node}/{output}"
            if manifest["topics"].get(topic, {}).get("count", 0) > 0:
                table = table_of(topic, ("recv_ns", "metadata"))
                metas = [json.loads(m) for m in table.column("metadata").to_pylist()]
                recv = table.column("recv_ns").to_pylist()
                recorded_outputs += [(r, m) for r, m in zip(recv, metas, strict=True)
                                     if "inputs" in m]
        seqs = {name: table.column("seq").to_pylist() for name, table in rows.items()}
        out[node] = [(topic_of[name], row, name, seqs[name][row])
                     for name, row in feed_order(rows, sent_order(recorded_outputs))]
    return out


def replayer_feeds(order: dict[str, list[tuple[str, int, str, int]]], replaced: list[str]
                   ) -> dict[str, list[tuple[str, int, str]]]:
    """What the replayer sends each node: its replaced sources' messages, in node order."""
    feeds = {node: [(topic, row, name) for topic, row, name, _ in items
                    if topic.split("/")[0] in replaced] for node, items in order.items()}
    return {node: items for node, items in feeds.items() if items}


def merged(feeds: dict[str, list[tuple[str, int, str]]], recv: dict[str, list[int]]
           ) -> list[tuple[str, str, int, str]]:
    """All feeds as one sequence (node, topic, row, input): each feed's own order kept,
    the feeds interleaved by recording time (``recv``: each topic's receive times)."""
    heap = [(recv[items[0][0]][items[0][1]], node, 0) for node, items in feeds.items() if items]
    heapq.heapify(heap)
    out = []
    while heap:
        _, node, i = heapq.heappop(heap)
        topic, row, name = feeds[node][i]
        out.append((node, topic, row, name))
        if i + 1 < len(feeds[node]):
            nxt = feeds[node][i + 1]
            heapq.heappush(heap, (recv[nxt[0]][nxt[1]], node, i + 1))
    return out


def gated(spec: dict[str, Any], order: dict[str, list[tuple[str, int, str, int]]],
          scratch: Path) -> dict[str, Any]:
    """The replay graph with every planned node holding its inputs to the recorded order
    (``tuina.runtime.ReplayGate``), and every input of theirs queued deep with backpressure, so
    no message the plan waits for is ever dropped."""
    from tuina.recording.record import QUEUE_SIZE

    nodes = []
    for node in spec["nodes"]:
        if node["id"] in order:
            node = dict(node)
            order_file = scratch / f"{node['id']}.order.json"
            order_file.write_text(json.dumps([[name, seq] for _, _, name, seq
                                              in order[node["id"]]]))
            node["env"] = {**(node.get("env") or {}), REPLAY_ORDER_ENV: str(order_file)}
            node["inputs"] = {
                name: mapping if source_of(mapping).startswith(("dora/", f"{REPLAYER_ID}/"))
                else {"source": source_of(mapping), "queue_size": QUEUE_SIZE,
                      "queue_policy": "backpressure"}
                for name, mapping in node["inputs"].items()}
        nodes.append(node)
    return {**spec, "nodes": nodes}


def run_bound_s(manifest: dict[str, Any], speed: float) -> float | None:
    """How long a replay may run before it is stopped: the recorded span at ``speed``
    (at speed 0, at the recorded pace), twice over, plus a minute to start and finish; None
    for a recording that was cut short (its span is unknown)."""
    if "end_wall_ns" not in manifest or "start_wall_ns" not in manifest:
        return None
    span_s = max(0, manifest["end_wall_ns"] - manifest["start_wall_ns"]) / 1e9
    return 2.0 * span_s / (speed if speed > 0 else 1.0) + 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tuina replay`` options."""
    parser.add_argument("recording", help="recording folder, e.g. recordings/my-session")
    parser.add_argument("--graph", default=None, help="graph to run (default: the recorded one)")
    parser.add_argument("--replace", default=None, help="node,... whose outputs come from the "
                        "recording (default: the nodes facing hardware or the sim world)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="0: as fast as the graph goes, 0.5, 1 (recorded timing), 2")
    parser.add_argument("--loop", action="store_true", help="start over at the end")
    parser.add_argument("-o", "--output", default=None,
                        help="record the replayed run here (as tuina record does)")


def main(args: Any) -> int:
    """``tuina replay``: rewrite the graph and run it."""
    from tuina.recording.record import run_beside, with_recorder

    folder = Path(args.recording)
    try:
        manifest = read_manifest(folder)
    except RecordingError as err:
        print(f"tuina replay: error: {err}", file=sys.stderr)
        return 2
    graph = Path(args.graph or manifest.get("graph_file", ""))
    if not graph.is_file():
        print(f"tuina replay: error: no graph at {graph}; pass --graph dataflows/<graph>.yml",
              file=sys.stderr)
        return 2
    spec = yaml.safe_load(graph.read_text())
    replaced = ([r.strip() for r in args.replace.split(",") if r.strip()] if args.replace
                else default_replaced(spec))
    try:
        rewritten, feeds = replay_graph(spec, replaced, set(manifest["topics"]))
        order = plan(folder, manifest, spec, replaced)
    except (ValueError, RecordingError) as err:
        print(f"tuina replay: error: {err}", file=sys.stderr)
        return 2
    used = {topic for pairs in feeds.values() for topic, _ in pairs}
    for topic in sorted(used):
        problem = topic_problem(folder, topic) if manifest["topics"][topic]["count"] else ""
        if problem:
            print(f"tuina replay: warning: {problem}; replaying what comes before",
                  file=sys.stderr)
    ids = {n["id"] for n in spec["nodes"]}
    extra = sorted(t for t in manifest["topics"] if t.split("/")[0] not in ids)
    if extra:
        print(f"tuina replay: recorded topics this graph has no node for: {', '.join(extra)}")
    scratch = Path(tempfile.mkdtemp(prefix="tuina-replay-"))
    plan_file = scratch / "plan.json"
    plan_file.write_text(json.dumps({"recording": str(folder.resolve()), "speed": args.speed,
                                     "loop": args.loop,
                                     "feeds": replayer_feeds(order, replaced)}))
    if args.speed == 0:
        rewritten = gated(rewritten, order, scratch)
    replayer = rewritten["nodes"][-1]
    replayer["env"] = {"PLAN_FILE": str(plan_file)}
    if args.output:
        rewritten = with_recorder(rewritten, [f"{n['id']}/{o}" for n in rewritten["nodes"]
                                              if n["id"] != REPLAYER_ID
                                              for o in n.get("outputs", [])],
                                  Path(args.output), graph)
    bound = None if args.loop else run_bound_s(manifest, args.speed)
    started = time.monotonic()
    try:
        status = run_beside(graph, rewritten, "replay",
                            None if bound is None else f"{bound:.0f}s")
        if bound is not None and time.monotonic() - started >= bound:
            print(f"tuina replay: stopped at its bound of {bound:.0f} s (a node did not "
                  "finish); what was replayed by then is kept", file=sys.stderr)
        return status
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
