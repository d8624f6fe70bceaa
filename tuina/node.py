"""What every tuina node shares: config at start, one-line errors, seq counters, the loop."""

from __future__ import annotations

import json
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


OPEN3D_PARAMS = [
    Param("OPEN3D_THREADS", "int", 1, "-", "CPU threads open3d may use: with 1 its sums run in "
          "one order, so a replay repeats this node's outputs bit for bit; 0: every core "
          "(ICP 4.5 instead of 6.9 ms on an idle machine)", low=0),
]  # for the nodes that call open3d: pass the value to o3d.utility.set_max_threads


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


class ReplayGate:
    """Hands a node's inputs on in a planned order of (input, seq): the order the node met
    them when it was recorded. A node fed by a replay and by live nodes at once gets the
    two in whatever order dora's scheduler makes; held to the recorded order, a node that
    is a function of its input sequence repeats its recorded outputs, whatever the timing.

    Inputs the plan does not name (timers) pass at once; messages past the plan wait for
    its end. ``give_up`` lets everything held through (the plan waits on a message that
    does not come: a live node upstream behaves otherwise than recorded).
    """

    def __init__(self, order: Sequence[tuple[str, int]]):
        self.order = [(str(name), int(seq)) for name, seq in order]
        self.planned = set(self.order)
        self.inputs = {name for name, _ in self.order}
        self.position = 0
        self.held: dict[tuple[str, int], dict[str, Any]] = {}
        self.after: list[dict[str, Any]] = []

    @property
    def done(self) -> bool:
        """Every planned message has been handed on."""
        return self.position >= len(self.order)

    def waiting_for(self) -> tuple[str, int] | None:
        """The (input, seq) the gate waits for, if any."""
        return None if self.done else self.order[self.position]

    def offer(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Take one input event; return the events now due, in order."""
        seq = event.get("metadata", {}).get("seq")
        if self.done or event["id"] not in self.inputs or seq is None:
            return [event]
        key = (event["id"], int(seq))
        if key in self.planned and key not in self.held:
            self.held[key] = event
        else:
            self.after.append(event)
        return self._due()

    def give_up(self) -> list[dict[str, Any]]:
        """Everything held, in plan order, then the rest in arrival order; the gate opens."""
        out = [self.held.pop(key) for key in self.order[self.position:] if key in self.held]
        self.position = len(self.order)
        out += self.after
        self.after = []
        return out

    def _due(self) -> list[dict[str, Any]]:
        out = []
        while not self.done and self.order[self.position] in self.held:
            out.append(self.held.pop(self.order[self.position]))
            self.position += 1
        if self.done and self.after:
            out += self.after
            self.after = []
        return out


REPLAY_ORDER_ENV = "TUINA_REPLAY_ORDER"  # set by ``tuina replay``: a JSON [[input, seq], ...]
REPLAY_STALL_ENV = "TUINA_REPLAY_STALL_S"


def replay_gate() -> tuple[ReplayGate, float] | None:
    """The gate ``tuina replay`` asks this node to keep (env ``TUINA_REPLAY_ORDER``), and
    how long it may wait for one message (``TUINA_REPLAY_STALL_S``, default 20 s)."""
    path = os.environ.get(REPLAY_ORDER_ENV, "")
    if not path:
        return None
    with open(path) as f:
        order = json.load(f)
    return ReplayGate(order), float(os.environ.get(REPLAY_STALL_ENV) or 20.0)


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
