"""``tuina estop``: the operator's e-stop button for a running graph.

The graph declares a dynamic node (``path: dynamic``) whose ``estop`` output is wired to the
robot node's ``estop`` input; this command connects as that node and presses it. Any other
node can stop the robot the same way: wire one of its outputs to a robot input whose name
starts with ``estop``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


def estop_message(reason: str, source: str, seq: int = 0,
                  pressed_ns: int | None = None) -> tuple[Any, dict[str, Any]]:
    """The e-stop payload and metadata: Bool[1] true, the wall-clock stamp of the press (now,
    or ``pressed_ns`` when the press happened elsewhere first, as a click on a page)."""
    import pyarrow as pa

    stamp = time.time_ns() if pressed_ns is None else int(pressed_ns)
    return pa.array([True]), {"stamp_ns": stamp, "seq": seq, "frame_id": "-",
                              "reason": reason, "source": source}


def press_age_ms(metadata: dict[str, Any], now_ns: int | None = None) -> float | None:
    """How long ago (ms, wall clock) the e-stop carried by ``metadata`` was pressed; None when
    its stamp is not a plausible wall-clock time (older than a minute or in the future)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    try:
        age = (now_ns - int(metadata["stamp_ns"])) / 1e6
    except (KeyError, TypeError, ValueError):
        return None
    return age if 0 <= age < 60_000 else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tuina estop`` options."""
    parser.add_argument("--node", default="estop-button",
                        help="the graph's dynamic e-stop node (default estop-button)")
    parser.add_argument("--reason", default="operator", help="why, for the robot's log line")


def main(args: Any) -> int:
    """Press the e-stop of the running graph's dynamic node ``args.node``."""
    try:
        from dora import Node

        node = Node(node_id=args.node)
    except Exception as err:  # dora raises RuntimeError with the daemon's message
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"tuina estop: error: cannot connect as node '{args.node}' ({cause}); is a graph "
              f"with a dynamic node '{args.node}' running (`dora run dataflows/sim.yml`)? "
              "Otherwise use the robot's hardware e-stop", file=sys.stderr)
        return 1
    value, metadata = estop_message(args.reason, args.node)
    node.send_output("estop", value, metadata)
    print(f"tuina estop: sent ({args.reason})")
    return 0
