"""Recordings: one Arrow IPC file per topic plus a manifest, written so a crash loses at most
the last second.

While recording, each topic goes to ``<node>__<output>.arrows``, an Arrow IPC *stream*
(record batches appended and flushed at least once a second; a stream cut short is still
readable up to its last whole batch). A recording that ends cleanly turns every stream into
an Arrow IPC *file*, ``<node>__<output>.arrow``, which ``pl.read_ipc`` / ``pl.scan_ipc`` open,
and marks the manifest complete. Columns: ``seq``, ``stamp_ns`` (event time), ``recv_ns``
(wall clock at the recorder), ``metadata`` (the rest of the message metadata, JSON) and
``payload`` (the message's Arrow array as a list).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

MANIFEST = "manifest.json"
FLUSH_S = 1.0
COMPRESSION = "lz4"  # Arrow's own buffer compression: fast enough for 30 Hz RGB-D


class RecordingError(ValueError):
    """A recording that cannot be read (as far as it can)."""


def topic_file(topic: str) -> str:
    """File stem of a ``node/output`` topic."""
    node, _, output = topic.partition("/")
    if not node or not output:
        raise RecordingError(f"topic {topic!r} is not node/output")
    return f"{node}__{output}"


def input_id(topic: str) -> str:
    """The recorder's input id for a topic (dora input ids cannot hold '/')."""
    return topic_file(topic)


def schema_for(payload_type: pa.DataType) -> pa.Schema:
    """The columns of one topic's file."""
    return pa.schema([("seq", pa.int64()), ("stamp_ns", pa.int64()), ("recv_ns", pa.int64()),
                      ("metadata", pa.string()), ("payload", pa.list_(payload_type))])


@dataclass
class TopicWriter:
    """Appends one topic's messages to its IPC stream, a batch at least every FLUSH_S."""

    path: Path
    rows: list[tuple[int, int, int, str, pa.Array]] = field(default_factory=list)
    writer: ipc.RecordBatchStreamWriter | None = None
    sink: Any = None
    schema: pa.Schema | None = None
    count: int = 0
    lost: int = 0  # gaps in the sender's seq counter
    last_seq: int | None = None
    bytes: int = 0

    def add(self, payload: pa.Array, metadata: dict[str, Any], recv_ns: int) -> None:
        """Buffer one message."""
        meta = dict(metadata)
        seq = int(meta.pop("seq", -1))
        stamp = int(meta.pop("stamp_ns", 0))
        if self.last_seq is not None and seq > self.last_seq + 1:
            self.lost += seq - self.last_seq - 1
        self.last_seq = seq
        if self.schema is None:
            self.schema = schema_for(payload.type)
        elif not payload.type.equals(self.schema.field("payload").type.value_type):
            raise RecordingError(f"{self.path.name}: payload type changed from "
                                 f"{self.schema.field('payload').type.value_type} to "
                                 f"{payload.type} at seq {seq}")
        self.rows.append((seq, stamp, recv_ns, json.dumps(meta, default=str), payload))
        self.count += 1

    def flush(self) -> None:
        """Write the buffered messages as one record batch and push it to the disk."""
        if not self.rows:
            return
        if self.writer is None:
            self.sink = pa.OSFile(str(self.path), "wb")
            self.writer = ipc.new_stream(self.sink, self.schema,
                                         options=ipc.IpcWriteOptions(compression=COMPRESSION))
        payload_type = self.schema.field("payload").type
        offsets = [0]
        for row in self.rows:
            offsets.append(offsets[-1] + len(row[4]))
        values = pa.concat_arrays([row[4] for row in self.rows])
        payload = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values,
                                           type=payload_type)
        batch = pa.record_batch([
            pa.array([r[0] for r in self.rows], pa.int64()),
            pa.array([r[1] for r in self.rows], pa.int64()),
            pa.array([r[2] for r in self.rows], pa.int64()),
            pa.array([r[3] for r in self.rows], pa.string()),
            payload], schema=self.schema)
        self.writer.write_batch(batch)
        self.sink.flush()
        os.fsync(self.sink.fileno())
        self.bytes += batch.nbytes
        self.rows.clear()

    def close(self, convert: bool = True) -> Path | None:
        """Flush, close the stream and (``convert``) turn it into an IPC file; the file's
        path. A stream that cannot be finished stays as it is."""
        try:
            self.flush()
        finally:
            if self.writer is not None:
                try:
                    self.writer.close()
                finally:
                    self.sink.close()
        if self.writer is None or not convert:
            return None
        final = self.path.with_suffix(".arrow")
        table = read_stream(self.path)
        with pa.OSFile(str(final) + ".tmp", "wb") as sink, ipc.new_file(
                sink, table.schema,
                options=ipc.IpcWriteOptions(compression=COMPRESSION)) as writer:
            writer.write_table(table)
        os.replace(str(final) + ".tmp", final)
        self.path.unlink()
        return final


def read_stream(path: Path) -> pa.Table:
    """Every whole record batch of an IPC stream; RecordingError names the file and the last
    good message when it is cut short or corrupt (what came before stays readable through
    ``read_stream_partial``)."""
    table, problem = read_stream_partial(path)
    if problem:
        raise RecordingError(problem)
    return table


def read_stream_partial(path: Path) -> tuple[pa.Table, str]:
    """The readable part of an IPC stream and, if it ends badly, why (else '')."""
    batches: list[pa.RecordBatch] = []
    schema = None
    try:
        with pa.OSFile(str(path), "rb") as source:
            reader = ipc.open_stream(source)
            schema = reader.schema
            for batch in reader:
                batches.append(batch)
    except (pa.ArrowInvalid, OSError) as err:
        if schema is None:
            return pa.table({}), f"{path}: not a readable Arrow stream ({err})"
        last = batches[-1].column("seq")[-1].as_py() if batches else None
        return (pa.Table.from_batches(batches, schema),
                f"{path}: cut short or corrupt after seq {last} ({err})")
    return pa.Table.from_batches(batches, schema), ""


def read_topic(folder: Path, topic: str, partial: bool = False) -> pa.Table:
    """One topic of a recording (the IPC file, or the stream of a recording that ended
    early). With ``partial``, a cut-short stream gives what it holds instead of an error."""
    stem = Path(folder) / topic_file(topic)
    final = stem.with_suffix(".arrow")
    if final.exists():
        try:
            return ipc.open_file(str(final)).read_all()
        except pa.ArrowInvalid as err:
            raise RecordingError(f"{final}: not a readable Arrow file ({err})") from None
    stream = stem.with_suffix(".arrows")
    if not stream.exists():
        raise RecordingError(f"{folder} has no topic {topic} (no {final.name})")
    table, problem = read_stream_partial(stream)
    if problem and not partial:
        raise RecordingError(problem)
    return table


def topic_problem(folder: Path, topic: str) -> str:
    """Why a topic of a recording is not whole ('' when it is)."""
    stem = Path(folder) / topic_file(topic)
    if stem.with_suffix(".arrow").exists():
        try:
            ipc.open_file(str(stem.with_suffix(".arrow")))
        except pa.ArrowInvalid as err:
            return f"{stem.with_suffix('.arrow')}: not a readable Arrow file ({err})"
        return ""
    if not stem.with_suffix(".arrows").exists():
        return f"{folder} has no topic {topic}"
    return read_stream_partial(stem.with_suffix(".arrows"))[1]


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a recording folder."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise RecordingError(f"{folder} is not a recording (no {MANIFEST})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RecordingError(f"{path}: not valid JSON ({err})") from None


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Replace the manifest atomically (a crash leaves the previous one)."""
    tmp = Path(folder) / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    os.replace(tmp, Path(folder) / MANIFEST)


@dataclass
class Recorder:
    """All topics of one recording, flushed together at least every FLUSH_S."""

    folder: Path
    manifest: dict[str, Any]
    clock: Any = time.monotonic
    writers: dict[str, TopicWriter] = field(default_factory=dict)
    last_flush: float = 0.0

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.manifest.setdefault("complete", False)
        self.manifest.setdefault("topics", {})
        self.last_flush = self.clock()
        write_manifest(self.folder, self.manifest)

    def add(self, topic: str, payload: pa.Array, metadata: dict[str, Any]) -> None:
        """Record one message; flush everything when the last flush is FLUSH_S old."""
        writer = self.writers.get(topic)
        if writer is None:
            writer = TopicWriter(self.folder / (topic_file(topic) + ".arrows"))
            self.writers[topic] = writer
        writer.add(payload, metadata, time.time_ns())
        if self.clock() - self.last_flush >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Every topic to disk, then the manifest's counts."""
        for writer in self.writers.values():
            writer.flush()
        self.last_flush = self.clock()
        self._count()
        write_manifest(self.folder, self.manifest)

    def _count(self) -> None:
        for topic, w in self.writers.items():
            self.manifest["topics"][topic] = {"count": w.count, "lost": w.lost,
                                              "file": topic_file(topic) + ".arrow"}

    def close(self, complete: bool = True, reason: str = "") -> None:
        """Finish every topic file and mark the recording complete, or incomplete with the
        reason (then the streams stay as they are, readable up to their last batch)."""
        problems = [reason] if reason else []
        for writer in self.writers.values():
            try:
                writer.close(convert=complete and not problems)
            except (OSError, RecordingError, pa.ArrowException) as err:
                problems.append(f"{writer.path.name}: {err}")
        self._count()
        self.manifest["complete"] = complete and not problems
        self.manifest["end_wall_ns"] = time.time_ns()
        if problems:
            self.manifest["incomplete_reason"] = "; ".join(problems)
        write_manifest(self.folder, self.manifest)
