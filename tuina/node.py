"""What every tuina node shares: config at start, one-line errors, seq counters, the loop."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from tuina.config import ConfigError, Param, load
from tuina.messages import Header


def fail(node: str, message: str, code: int = 2) -> None:
    """Print one clear error line and exit."""
    print(f"tuina-{node}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def raise_priority(node: str, nice: int, realtime_priority: int = 0) -> None:
    """Run this node at a higher scheduling priority: the SCHED_FIFO real-time class at
    ``realtime_priority`` (1-99; the threads the node starts later, dora's and franky's,
    inherit it), else a lower nice value. Without the permission for it, say so in one line
    and carry on at the next best priority."""
    if realtime_priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(realtime_priority))
            return
        except OSError as err:
            print(f"tuina-{node}: cannot set real-time priority {realtime_priority} "
                  f"({err.strerror}); grant CAP_SYS_NICE or run as root for a steadier loop",
                  file=sys.stderr, flush=True)
    if nice < 0:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError as err:
            print(f"tuina-{node}: cannot set nice {nice} ({err.strerror}); running at the "
                  "normal priority (grant CAP_SYS_NICE or run as root for a steadier loop)",
                  file=sys.stderr, flush=True)


PRIORITY_PARAMS = [
    Param("NICE", "int", 0, "-", "scheduling priority of this loop: a negative nice value "
          "(needs root or CAP_SYS_NICE) keeps its period steady on a busy machine",
          low=-20, high=19),
    Param("REALTIME_PRIORITY", "int", 0, "-", "SCHED_FIFO priority of this loop (1-99, needs "
          "root or CAP_SYS_NICE; takes precedence over NICE): the period stays steady while "
          "other nodes load every core; 0: off", low=0, high=99),
]  # the env keys raise_priority reads, for the loop nodes' PARAMS


def configure(node: str, params: Sequence[Param]) -> dict[str, Any]:
    """Load and validate the node's env: block, or exit with one line naming the fix."""
    try:
        return load(node, params)
    except ConfigError as err:
        fail(node, str(err))
        raise  # unreachable; keeps type checkers calm


REPLAY_INPUT = "replay"  # a replayer's single, ordered input (see ``tuina replay``)


class Lineage:
    """The ``seq`` of the latest message on each input: sent with every output (metadata
    ``inputs``), so a replay can feed a node exactly the interleaving it saw."""

    def __init__(self) -> None:
        self.seq: dict[str, int] = {}
        self.trigger = ""

    def note(self, event: dict[str, Any]) -> None:
        """Remember the input's latest seq; this event is the one being handled."""
        seq = event.get("metadata", {}).get("seq")
        if seq is not None:
            self.seq[event["id"]] = int(seq)
            self.trigger = event["id"]

    def metadata(self) -> dict[str, str]:
        """``inputs``: ``input=seq;...`` of the messages this output was computed from;
        ``trigger``: the input being handled when it was sent."""
        return {"inputs": ";".join(f"{k}={v}" for k, v in sorted(self.seq.items())),
                "trigger": self.trigger}


class Outputs:
    """Sends outputs with a per-output ``seq`` counter and the contract's metadata."""

    def __init__(self, node: Any):
        self.node = node
        self.seq: dict[str, int] = {}
        self.lineage = Lineage()  # pass to events(): every output then carries its inputs

    def header(self, output: str, stamp_ns: int, frame_id: str) -> Header:
        seq = self.seq.get(output, 0)
        self.seq[output] = seq + 1
        return Header(int(stamp_ns), seq, frame_id)

    def send(self, output: str, payload: pa.Array, stamp_ns: int, frame_id: str,
             **extra: Any) -> None:
        """Send a structured payload."""
        self.node.send_output(output, payload, self.header(output, stamp_ns, frame_id)
                              .to_metadata(**self.lineage.metadata(), **extra))

    def send_encoded(self, output: str, encoded: tuple[pa.Array, dict[str, Any]]) -> None:
        """Send an (array, metadata) pair from an encode_* helper."""
        array, metadata = encoded
        self.node.send_output(output, array, {**self.lineage.metadata(), **metadata})


def parse_lineage(text: str) -> dict[str, int]:
    """``input=seq;...`` back to a dict."""
    return {k: int(v) for k, v in (item.split("=") for item in text.split(";") if item)}


def unwrap(event: dict[str, Any]) -> dict[str, Any]:
    """A replayed message as the input it stands for (its ``replay_input`` metadata)."""
    if event["id"] == REPLAY_INPUT and "replay_input" in event.get("metadata", {}):
        return {**event, "id": event["metadata"]["replay_input"]}
    return event


def events(node: Any, timers: Sequence[str] = (),
           lineage: Lineage | None = None) -> Iterator[dict[str, Any]]:
    """INPUT events until the session ends.

    The session ends on STOP, or when any input other than a timer closes: every
    upstream node of a massage graph lives for the whole session, so a closed input
    means the session is over. Inputs queued ahead of a STOP are still delivered. With
    ``lineage`` (the node's ``Outputs.lineage``), each input is noted before it is handed on.
    """
    for event in _inputs(node, timers):
        if lineage is not None:
            lineage.note(event)
        yield event


def _inputs(node: Any, timers: Sequence[str]) -> Iterator[dict[str, Any]]:
    for event in node:
        kind = event["type"]
        if kind == "INPUT":
            yield unwrap(event)
        elif (kind == "INPUT_CLOSED" and event["id"] not in timers) or kind == "STOP":
            yield from drained(node)
            return
        elif kind == "ERROR":
            print(f"dora error: {event.get('error')}", file=sys.stderr, flush=True)


def drained(node: Any) -> Iterator[dict[str, Any]]:
    """The inputs still queued when the session ends: dora can deliver a closed input or a
    STOP ahead of messages already sent (a replay at full speed ends that way)."""
    while True:
        try:
            pending = node.drain() if hasattr(node, "drain") else []
        except RuntimeError:  # the channel is already closed: nothing is left
            return
        inputs = [e for e in pending if e.get("type") == "INPUT"]
        if not inputs:
            return
        for event in inputs:
            yield unwrap(event)


def paced_events(node: Any, period_s: float, tick: str = "tick",
                 clock: Any = time.perf_counter) -> Iterator[dict[str, Any]]:
    """Like ``events``, plus a ``{"id": tick}`` event at every multiple of ``period_s`` (an
    absolute schedule in this process: no drift, and no daemon hop that a busy machine can
    delay). A deadline missed by more than a period is skipped, not made up in a burst."""
    deadline = clock() + period_s
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            yield {"type": "INPUT", "id": tick, "metadata": {}, "value": None}
            deadline += period_s
            if clock() - deadline > period_s:
                deadline = clock() + period_s
            continue
        event = node.next(timeout=remaining)
        if event is None:  # every sender is gone
            return
        kind = event["type"]
        if kind == "INPUT":
            if event["id"] != tick:  # a wired clock of the same name is not needed
                yield unwrap(event)
        elif kind in ("INPUT_CLOSED", "STOP") and event.get("id") != tick:
            return
        elif kind == "ERROR" and not str(event.get("error", "")).startswith("Timeout"):
            print(f"dora error: {event.get('error')}", file=sys.stderr, flush=True)


def stamp_of(event: dict[str, Any]) -> int:
    """Event time of an input (ns)."""
    return int(event["metadata"]["stamp_ns"])
