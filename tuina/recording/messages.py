"""A recording's messages one by one in event-time order, as the nodes received them: the
topic, the stamp, the Arrow payload and the metadata (what ``tuina export`` and the viewer
share)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tuina.recording import read_manifest, read_topic


@dataclass(frozen=True)
class Recorded:
    """One recorded message."""

    topic: str  # node/output
    stamp_ns: int  # event time
    value: pa.Array  # the payload as the node sent it
    metadata: dict[str, Any]

    @property
    def stream(self) -> str:
        """The output's name: the contract's stream (``rgb``, ``robot_state``, ...)."""
        return self.topic.rsplit("/", 1)[-1]


def recorded_topics(folder: Path) -> dict[str, pa.Table]:
    """Every topic of the recording that holds messages, read whole (cut-short streams as far
    as they go)."""
    manifest = read_manifest(folder)
    tables = {}
    for topic, entry in manifest.get("topics", {}).items():
        if entry.get("count", 0) > 0:
            table = read_topic(folder, topic, partial=True)
            if table.num_rows:
                tables[topic] = table
    return tables


def in_time_order(tables: dict[str, pa.Table]) -> Iterator[Recorded]:
    """The messages of ``tables`` by event time (a topic's own order kept on equal stamps)."""
    if not tables:
        return
    topics = list(tables)
    stamps = [tables[t].column("stamp_ns").to_numpy() for t in topics]
    which = np.concatenate([np.full(len(s), i) for i, s in enumerate(stamps)])
    rows = np.concatenate([np.arange(len(s)) for s in stamps])
    order = np.lexsort((rows, which, np.concatenate(stamps)))
    payloads = {t: tables[t].column("payload").combine_chunks() for t in topics}
    metadata = {t: tables[t].column("metadata").to_pylist() for t in topics}
    for k in order:
        topic, row = topics[which[k]], int(rows[k])
        yield Recorded(topic, int(stamps[which[k]][row]), payloads[topic][row].values,
                       {**json.loads(metadata[topic][row] or "{}"),
                        "stamp_ns": int(stamps[which[k]][row])})
