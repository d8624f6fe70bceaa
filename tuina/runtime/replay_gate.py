"""A deterministic replay's gate: the node's inputs handed on in the order it met them when
recorded (``tuina replay --speed 0``)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

REPLAY_INPUT = "replay"  # a replayer's single, ordered input (see ``tuina replay``)


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
