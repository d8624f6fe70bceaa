"""replayer: sends recorded messages to the nodes under replay (``tuina replay`` wires it).

Outputs: ``to_<node>`` per fed node (wired to that node's ``replay`` input); each message
keeps its recorded payload, ``stamp_ns``, ``seq`` and metadata, plus ``replay_input``, the
input it stands for. SPEED 0 sends as fast as the graph takes them (the feeds' backpressure
queues keep every message); 1 keeps the recorded timing, 0.5 half speed, 2 double.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tuina.recording import RecordingError, read_topic
from tuina.recording.replay import merged
from tuina.runtime import configure
from tuina.settings.replayer import PARAMS


def main() -> None:
    """Send the plan's messages, paced by the recorded receive times over SPEED."""
    cfg = configure("replayer", PARAMS)
    try:
        plan = json.loads(Path(cfg["PLAN_FILE"]).read_text())
    except (OSError, json.JSONDecodeError) as err:
        print(f"tuina-replayer: error: cannot read PLAN_FILE ({err}); run it through "
              "`tuina replay`", file=sys.stderr, flush=True)
        sys.exit(2)
    folder = Path(plan["recording"])
    feeds = {node: [tuple(item) for item in items] for node, items in plan["feeds"].items()}
    try:
        tables = {topic: read_topic(folder, topic, partial=True)
                  for topic in {topic for items in feeds.values() for topic, _, _ in items}}
        sequence = merged(feeds, {topic: t.column("recv_ns").to_pylist()
                                  for topic, t in tables.items()})
    except RecordingError as err:
        print(f"tuina-replayer: error: {err}", file=sys.stderr, flush=True)
        sys.exit(1)
    columns = {topic: (t.column("seq").to_pylist(), t.column("stamp_ns").to_pylist(),
                       t.column("recv_ns").to_pylist(), t.column("metadata").to_pylist(),
                       t.column("payload")) for topic, t in tables.items()}
    from dora import Node

    node = Node()
    speed = float(plan["speed"])
    while True:
        start_wall = time.monotonic()
        first_recv = None
        for target, topic, row, name in sequence:
            seq, stamp, recv, meta, payload = columns[topic]
            if speed > 0:
                first_recv = recv[row] if first_recv is None else first_recv
                wait = (recv[row] - first_recv) * 1e-9 / speed - (time.monotonic() - start_wall)
                if wait > 0:
                    time.sleep(wait)
            metadata = {**json.loads(meta[row]), "seq": seq[row], "stamp_ns": stamp[row],
                        "replay_input": name}
            metadata.pop("timestamp", None)  # dora's own clock stamps the new message
            node.send_output(f"to_{target}", payload[row].values, metadata)
        if not plan.get("loop"):
            break
    print(f"tuina-replayer: sent {len(sequence)} messages", flush=True)


if __name__ == "__main__":
    main()
