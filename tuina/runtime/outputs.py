"""A node's outputs: per-output ``seq`` counters, the contract's metadata, and the lineage of
inputs each output was computed from."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from tuina.messages import Header


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
