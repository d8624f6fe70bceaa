"""Recordings: one Arrow IPC file per topic plus a manifest, written so a crash loses at most
the last second.

While recording, each topic goes to ``<node>__<output>.arrows``: an Arrow IPC file still
without its footer, record batches appended and flushed at least once a second (the
bytes after the file's 8-byte magic are an IPC stream, readable up to the last whole batch
when the recorder dies). A recording that ends cleanly writes each footer, renames the
files to ``<node>__<output>.arrow`` (``pl.read_ipc`` / ``pl.scan_ipc`` open them; nothing
is rewritten) and marks the manifest complete. Columns: ``seq``, ``stamp_ns`` (event time),
``recv_ns`` (wall clock at the recorder), ``metadata`` (the rest of the message metadata,
JSON) and ``payload`` (the message's Arrow array as a list). Each topic is lz4-compressed
when its first batch shrinks by more than 10% that way (depth and robot states do, noisy
RGB does not).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
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


COLUMNS = ("seq", "stamp_ns", "recv_ns", "metadata", "payload")


def schema_for(payload_type: pa.DataType) -> pa.Schema:
    """The columns of one topic's file (COLUMNS, in that order)."""
    return pa.schema(list(zip(COLUMNS, [pa.int64(), pa.int64(), pa.int64(), pa.string(),
                                        pa.list_(payload_type)], strict=True)))


@dataclass
class TopicWriter:
    """Appends one topic's messages to its IPC stream, a batch at least every FLUSH_S."""

    path: Path
    rows: list[tuple[int, int, int, str, pa.Array]] = field(default_factory=list)
    writer: ipc.RecordBatchFileWriter | None = None
    sink: Any = None
    schema: pa.Schema | None = None
    count: int = 0
    lost: int = 0  # gaps in the sender's seq counter
    last_seq: int | None = None

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
        batch = self._batch()
        if self.writer is None:
            self.sink = pa.OSFile(str(self.path), "wb")
            compression = COMPRESSION if _compresses(batch) else None
            self.writer = ipc.new_file(self.sink, self.schema,
                                       options=ipc.IpcWriteOptions(compression=compression))
        self.writer.write_batch(batch)
        self.sink.flush()
        os.fsync(self.sink.fileno())
        self.rows.clear()

    def _batch(self) -> pa.RecordBatch:
        payload_type = self.schema.field("payload").type
        offsets = [0]
        for row in self.rows:
            offsets.append(offsets[-1] + len(row[4]))
        values = pa.concat_arrays([row[4] for row in self.rows])
        payload = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values,
                                           type=payload_type)
        return pa.record_batch([
            pa.array([r[0] for r in self.rows], pa.int64()),
            pa.array([r[1] for r in self.rows], pa.int64()),
            pa.array([r[2] for r in self.rows], pa.int64()),
            pa.array([r[3] for r in self.rows], pa.string()),
            payload], schema=self.schema)

    def close(self, finish: bool = True) -> Path | None:
        """Flush and (``finish``) write the footer and rename the file to ``.arrow``; its
        path. A file that cannot be finished stays as it is, readable up to its last batch."""
        self.flush()
        if self.writer is None or not finish:
            if self.sink is not None:
                self.sink.close()
            return None
        try:
            self.writer.close()
        finally:
            self.sink.close()
        final = self.path.with_suffix(".arrow")
        os.replace(self.path, final)
        return final


def _compresses(batch: pa.RecordBatch) -> bool:
    """Whether lz4 makes this batch more than 10% smaller."""
    sizes = []
    for compression in (None, COMPRESSION):
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, batch.schema,
                            options=ipc.IpcWriteOptions(compression=compression)) as writer:
            writer.write_batch(batch)
        sizes.append(sink.getvalue().size)
    return sizes[1] < 0.9 * sizes[0]


def _read_options(columns: Sequence[str] | None) -> ipc.IpcReadOptions:
    """Read only these columns (and ``seq``): the payloads need not be decompressed."""
    if columns is None:
        return ipc.IpcReadOptions()
    wanted = {"seq", *columns}
    return ipc.IpcReadOptions(included_fields=[i for i, name in enumerate(COLUMNS)
                                               if name in wanted])


def read_stream_partial(path: Path, columns: Sequence[str] | None = None
                        ) -> tuple[pa.Table, str]:
    """The readable part of an unfinished IPC file (or an IPC stream) and, if it ends
    badly, why (else '')."""
    batches: list[pa.RecordBatch] = []
    schema = None
    try:
        with pa.OSFile(str(path), "rb") as source:
            if source.read(6) != b"ARROW1":
                source.seek(0)  # a plain stream
            else:
                source.seek(8)  # the file's magic and padding: a stream follows
            reader = ipc.open_stream(source, options=_read_options(columns))
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


def read_topic(folder: Path, topic: str, partial: bool = False,
               columns: Sequence[str] | None = None) -> pa.Table:
    """One topic of a recording (the IPC file, or the stream of a recording that ended
    early), all columns or only ``columns`` (plus ``seq``). With ``partial``, a cut-short
    stream gives what it holds instead of an error."""
    stem = Path(folder) / topic_file(topic)
    final = stem.with_suffix(".arrow")
    if final.exists():
        try:
            return ipc.open_file(pa.memory_map(str(final)),
                                 options=_read_options(columns)).read_all()
        except pa.ArrowInvalid as err:
            raise RecordingError(f"{final}: not a readable Arrow file ({err})") from None
    stream = stem.with_suffix(".arrows")
    if not stream.exists():
        raise RecordingError(f"{folder} has no topic {topic} (no {final.name})")
    table, problem = read_stream_partial(stream, columns)
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
    if not Path(folder).exists():
        raise RecordingError(f"no recording at {Path(folder).resolve()}: the folder does not "
                             "exist; pass the folder `tuina record -o` wrote")
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
                writer.close(finish=complete and not problems)
            except (OSError, RecordingError, pa.ArrowException) as err:
                problems.append(f"{writer.path.name}: {err}")
        self._count()
        self.manifest["complete"] = complete and not problems
        self.manifest["end_wall_ns"] = time.time_ns()
        if problems:
            self.manifest["incomplete_reason"] = "; ".join(problems)
        write_manifest(self.folder, self.manifest)
