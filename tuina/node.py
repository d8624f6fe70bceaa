"""What every tuina node shares: config at start, one-line errors, seq counters, the loop."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from tuina.config import ConfigError, Param, load
from tuina.messages import Header


def fail(node: str, message: str, code: int = 2) -> None:
    """Print one clear error line and exit."""
    print(f"tuina-{node}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def raise_priority(node: str, nice: int) -> None:
    """Run this node at a higher scheduling priority (a lower nice value); without the
    permission for it, say so in one line and carry on at the normal priority."""
    if nice >= 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as err:
        print(f"tuina-{node}: cannot set nice {nice} ({err.strerror}); running at the normal "
              "priority (grant CAP_SYS_NICE or run as root for a steadier loop)",
              file=sys.stderr, flush=True)


def configure(node: str, params: Sequence[Param]) -> dict[str, Any]:
    """Load and validate the node's env: block, or exit with one line naming the fix."""
    try:
        return load(node, params)
    except ConfigError as err:
        fail(node, str(err))
        raise  # unreachable; keeps type checkers calm


class Outputs:
    """Sends outputs with a per-output ``seq`` counter and the contract's metadata."""

    def __init__(self, node: Any):
        self.node = node
        self.seq: dict[str, int] = {}

    def header(self, output: str, stamp_ns: int, frame_id: str) -> Header:
        seq = self.seq.get(output, 0)
        self.seq[output] = seq + 1
        return Header(int(stamp_ns), seq, frame_id)

    def send(self, output: str, payload: pa.Array, stamp_ns: int, frame_id: str,
             **extra: Any) -> None:
        """Send a structured payload."""
        self.node.send_output(output, payload,
                              self.header(output, stamp_ns, frame_id).to_metadata(**extra))

    def send_encoded(self, output: str, encoded: tuple[pa.Array, dict[str, Any]]) -> None:
        """Send an (array, metadata) pair from an encode_* helper."""
        self.node.send_output(output, *encoded)


def events(node: Any, timers: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
    """INPUT events until the session ends.

    The session ends on STOP, or when any input other than a timer closes: every
    upstream node of a massage graph lives for the whole session, so a closed input
    means the session is over. Inputs queued ahead of a STOP are still delivered.
    """
    for event in node:
        kind = event["type"]
        if kind == "INPUT":
            yield event
        elif kind == "INPUT_CLOSED" and event["id"] not in timers:
            return
        elif kind == "STOP":
            return
        elif kind == "ERROR":
            print(f"dora error: {event.get('error')}", file=sys.stderr, flush=True)


def stamp_of(event: dict[str, Any]) -> int:
    """Event time of an input (ns)."""
    return int(event["metadata"]["stamp_ns"])
