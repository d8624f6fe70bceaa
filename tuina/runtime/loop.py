"""A node's event loops: inputs until the session ends (through the replay gate when one is
asked for), and a robot node's fixed-rate supervised loop."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from tuina.runtime.outputs import Lineage
from tuina.runtime.replay_gate import REPLAY_INPUT, ReplayGate, replay_gate, unwrap


def events(node: Any, timers: Sequence[str] = (),
           lineage: Lineage | None = None) -> Iterator[dict[str, Any]]:
    """INPUT events until the session ends.

    The session ends on STOP, or when any input other than a timer closes: every
    upstream node of a massage graph lives for the whole session, so a closed input
    means the session is over. Inputs queued ahead of a STOP are still delivered. With
    ``lineage`` (the node's ``Outputs.lineage``), each input is noted before it is handed on.
    Under a deterministic replay (``tuina replay --speed 0``) the inputs come in their
    recorded order (``ReplayGate``).
    """
    gate = replay_gate()
    stream = _inputs(node, timers) if gate is None else _gated(node, *gate)
    for event in stream:
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


def _gated(node: Any, gate: ReplayGate, stall_s: float) -> Iterator[dict[str, Any]]:
    """``_inputs`` through a replay gate. The node lives on after the replay ends until
    the gate has handed on every planned message: live nodes upstream may still be
    computing the ones it waits for (a closed live input, or a timer, ends nothing)."""
    replay_over = False
    progress = time.monotonic()
    while not (replay_over and gate.done):
        event = node.next(timeout=min(1.0, stall_s))
        if event is None or event["type"] == "STOP":
            for queued in drained(node):  # dora may stop a node ahead of its queued inputs
                yield from gate.offer(queued)
            break
        kind = event["type"]
        if kind == "INPUT":
            due = gate.offer(unwrap(event))
            if due:
                progress = time.monotonic()
            yield from due
        elif kind == "INPUT_CLOSED" and event["id"] == REPLAY_INPUT:
            replay_over = True
        elif kind == "ERROR" and not str(event.get("error", "")).startswith("Timeout"):
            print(f"dora error: {event.get('error')}", file=sys.stderr, flush=True)
        if not gate.done and time.monotonic() - progress > stall_s:
            name, seq = gate.waiting_for() or ("", 0)
            print(f"replay: no {name} #{seq} for {stall_s:g} s (a live node upstream runs "
                  "otherwise than recorded); going on in arrival order, so this run may "
                  "differ from the recording", file=sys.stderr, flush=True)
            yield from gate.give_up()
    yield from gate.give_up()  # nothing is drained: what comes past the plan was not recorded


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


GONE = "GONE"  # supervised_events: dora has nothing more to deliver (every sender is gone)


def supervised_events(node: Any, period_s: float, tick: str = "tick",
                      clock: Any = time.perf_counter,
                      sleep: Any = time.sleep) -> Iterator[dict[str, Any]]:
    """A robot node's events: a ``{"id": tick}`` INPUT at every multiple of ``period_s``
    (absolute schedule, missed deadlines skipped), every INPUT, and INPUT_CLOSED, STOP and
    one ``GONE`` event as they come. It never ends by itself: after STOP and GONE the ticks go
    on, so the node keeps supervising the arm until it decides it is done."""
    deadline = clock() + period_s
    gone = False
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            yield {"type": "INPUT", "id": tick, "metadata": {}, "value": None}
            deadline += period_s
            if clock() - deadline > period_s:
                deadline = clock() + period_s
            continue
        if gone:
            sleep(remaining)
            continue
        event = node.next(timeout=remaining)
        if event is None:
            gone = True
            yield {"type": GONE, "id": ""}
            continue
        kind = event["type"]
        if kind == "INPUT":
            if event["id"] != tick:
                yield unwrap(event)
        elif kind in ("INPUT_CLOSED", "STOP"):
            if event.get("id") != tick:
                yield event
        elif kind == "ERROR" and not str(event.get("error", "")).startswith("Timeout"):
            print(f"dora error: {event.get('error')}", file=sys.stderr, flush=True)


def stamp_of(event: dict[str, Any]) -> int:
    """Event time of an input (ns)."""
    return int(event["metadata"]["stamp_ns"])
