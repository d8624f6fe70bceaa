"""``tuina export RECORDING --mcap OUT`` / ``--rrd OUT``: a recording in the field's tools.

``--mcap``: one MCAP channel per recorded topic (``/node/output``), each message logged at its
event time: Foxglove's well-known schemas where one fits (``rgb`` and ``depth`` as RawImage,
``camera_info`` as CameraCalibration, ``target_pose`` as PoseInFrame), JSON with a JSON schema
made from the contract's Arrow type for the rest. Beside them, views Foxglove draws at once:
``/tf`` (base -> camera, from ``camera_info``), ``.../points`` (each depth frame as a
PointCloud in the camera frame, every CLOUD_STRIDE-th pixel) and ``.../path`` (the planned
path as a SceneUpdate line). The graph's YAML and the package versions of the recording go in
as MCAP metadata. Opened by Foxglove, Lichtblick and rerun.

``--rrd``: the views the viewer node logs live (``tuina.session_view``), on the same event-time
timeline, saved as a rerun recording.

Both write beside the output first and rename when whole: a failed export leaves nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tuina.messages import CameraInfo, TargetPose, Trajectory, decode_depth, decode_rgb
from tuina.operators.geometry import depth_to_points, matrix_to_quat
from tuina.recording import RecordingError, read_manifest
from tuina.recording.messages import Recorded, in_time_order, recorded_topics

CLOUD_STRIDE = 4  # every 4th pixel of every 4th row: 19 200 points of a 640x480 frame
PROGRESS_S = 2.0  # a progress line at most this often


def json_schema(arrow_type: pa.DataType) -> dict[str, Any]:
    """The JSON schema of a value of ``arrow_type`` as ``json_value`` writes it."""
    if pa.types.is_struct(arrow_type):
        return {"type": "object", "properties": {f.name: json_schema(f.type)
                                                 for f in arrow_type}}
    if pa.types.is_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type) or \
            pa.types.is_large_list(arrow_type):
        return {"type": "array", "items": json_schema(arrow_type.value_type)}
    if pa.types.is_boolean(arrow_type):
        return {"type": "boolean"}
    if pa.types.is_integer(arrow_type):
        return {"type": "integer"}
    if pa.types.is_floating(arrow_type):
        return {"type": ["number", "null"]}  # NaN is written as null
    return {"type": "string"}


def json_value(value: Any) -> Any:
    """A payload as JSON allows it: NaN and infinities become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_value(v) for v in value]
    return value


def json_payload(message: Recorded) -> dict[str, Any]:
    """One message as a JSON object: its payload (one value, or ``items`` for several) and
    its metadata."""
    values = message.value.to_pylist()
    if len(values) == 1 and pa.types.is_struct(message.value.type):
        payload = values[0]
    else:
        payload = {"items": values}
    return json_value({**payload, "_metadata": message.metadata})


def json_topic_schema(arrow_type: pa.DataType) -> dict[str, Any]:
    """The schema of ``json_payload``'s objects for a payload of ``arrow_type``."""
    if pa.types.is_struct(arrow_type):
        schema = json_schema(arrow_type)
    else:
        schema = {"type": "object", "properties": {"items": {"type": "array", "items":
                                                             json_schema(arrow_type)}}}
    schema["properties"]["_metadata"] = {"type": "object"}
    return schema


class McapExport:
    """Writes recorded messages to an MCAP file through foxglove-sdk's writer."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        import foxglove

        self.fg = foxglove
        self.context = foxglove.Context()
        self.writer = foxglove.open_mcap(path, allow_overwrite=True, context=self.context)
        self.writer.write_metadata("graph", {"file": manifest.get("graph_file", ""),
                                             "yaml": manifest.get("graph", "")})
        self.writer.write_metadata("versions", {k: str(v) for k, v in
                                                manifest.get("versions", {}).items()})
        self.channels: dict[str, Any] = {}
        self.info: CameraInfo | None = None

    def channel(self, topic: str, make: Any) -> Any:
        if topic not in self.channels:
            self.channels[topic] = make()
        return self.channels[topic]

    def json_channel(self, topic: str, arrow_type: pa.DataType) -> Any:
        fg = self.fg
        return self.channel(topic, lambda: fg.Channel(
            topic, message_encoding="json", context=self.context,
            schema=fg.Schema(name=topic.rsplit("/", 1)[-1], encoding="jsonschema",
                             data=json.dumps(json_topic_schema(arrow_type)).encode())))

    def write(self, message: Recorded) -> None:
        """Log one message on its topic's channel (and the views made from it)."""
        from foxglove import channels
        from foxglove import messages as schemas

        topic, t = "/" + message.topic, message.stamp_ns
        stamp = schemas.Timestamp(sec=t // 1_000_000_000, nsec=t % 1_000_000_000)
        frame = str(message.metadata.get("frame_id", ""))
        stream = message.stream
        if stream == "rgb":
            image = np.ascontiguousarray(decode_rgb(message.value, message.metadata))
            self.channel(topic, lambda: channels.RawImageChannel(topic, context=self.context)
                         ).log(schemas.RawImage(
                             timestamp=stamp, frame_id=frame, width=image.shape[1],
                             height=image.shape[0], encoding="rgb8", step=image.shape[1] * 3,
                             data=image.tobytes()), log_time=t)
        elif stream == "depth":
            raw = message.value.to_numpy(zero_copy_only=False).astype("<u2")
            w, h = int(message.metadata["width"]), int(message.metadata["height"])
            self.channel(topic, lambda: channels.RawImageChannel(topic, context=self.context)
                         ).log(schemas.RawImage(timestamp=stamp, frame_id=frame, width=w,
                                                height=h, encoding="16UC1", step=w * 2,
                                                data=raw.tobytes()), log_time=t)
            if self.info is not None:
                self.cloud(topic + "/points", message, stamp, frame)
        elif stream == "camera_info":
            self.info = CameraInfo.from_arrow(message.value)
            self.calibration(topic, stamp, frame, t)
        elif stream == "target_pose":
            pose = TargetPose.from_arrow(message.value)
            self.channel(topic, lambda: channels.PoseInFrameChannel(topic, context=self.context)
                         ).log(schemas.PoseInFrame(
                             timestamp=stamp, frame_id=frame,
                             pose=schemas.Pose(position=schemas.Vector3(**xyz(pose.position)),
                                               orientation=schemas.Quaternion(
                                                   **xyzw(pose.quaternion)))), log_time=t)
        else:
            self.json_channel(topic, message.value.type).log(
                json.dumps(json_payload(message)).encode(), log_time=t)
            if stream == "trajectory":
                self.path(topic + "/path", Trajectory.from_arrow(message.value), stamp, frame,
                          t)

    def calibration(self, topic: str, stamp: Any, frame: str, t: int) -> None:
        from foxglove import channels
        from foxglove import messages as schemas

        info = self.info
        distortion = list(info.distortion) or [0.0] * 5
        self.channel(topic, lambda: channels.CameraCalibrationChannel(
            topic, context=self.context)).log(schemas.CameraCalibration(
                timestamp=stamp, frame_id=frame, width=info.width, height=info.height,
                distortion_model="plumb_bob", D=distortion, K=info.K.ravel().tolist(),
                R=np.eye(3).ravel().tolist(),
                P=np.hstack([info.K, np.zeros((3, 1))]).ravel().tolist()), log_time=t)
        base_T_camera = info.extrinsics
        rotation = xyzw(matrix_to_quat(base_T_camera[:3, :3]))
        self.channel("/tf", lambda: channels.FrameTransformChannel(
            "/tf", context=self.context)).log(schemas.FrameTransform(
                timestamp=stamp, parent_frame_id="base", child_frame_id=frame,
                translation=schemas.Vector3(**xyz(base_T_camera[:3, 3])),
                rotation=schemas.Quaternion(**rotation)), log_time=t)

    def cloud(self, topic: str, message: Recorded, stamp: Any, frame: str) -> None:
        from foxglove import channels
        from foxglove import messages as schemas

        points = depth_cloud(message, self.info).astype("<f4")
        f32 = schemas.PackedElementFieldNumericType.Float32
        self.channel(topic, lambda: channels.PointCloudChannel(topic, context=self.context)
                     ).log(schemas.PointCloud(
                         timestamp=stamp, frame_id=frame, point_stride=12,
                         fields=[schemas.PackedElementField(name=n, offset=4 * i, type=f32)
                                 for i, n in enumerate("xyz")],
                         data=points.tobytes()), log_time=message.stamp_ns)

    def path(self, topic: str, plan: Trajectory, stamp: Any, frame: str, t: int) -> None:
        from foxglove import channels
        from foxglove import messages as schemas

        points = np.asarray(plan.positions, float).reshape(-1, 3)
        line = schemas.LinePrimitive(
            type=schemas.LinePrimitiveLineType.LineStrip, thickness=0.004,
            scale_invariant=False, points=[schemas.Point3(**xyz(p)) for p in points],
            color=schemas.Color(r=0.1, g=0.6, b=1.0, a=1.0))
        self.channel(topic, lambda: channels.SceneUpdateChannel(topic, context=self.context)
                     ).log(schemas.SceneUpdate(entities=[schemas.SceneEntity(
                         timestamp=stamp, frame_id=frame, id="planned", lines=[line])]),
                         log_time=t)

    def close(self) -> None:
        self.writer.close()


def xyz(v: Any) -> dict[str, float]:
    return dict(zip("xyz", map(float, v), strict=True))


def xyzw(v: Any) -> dict[str, float]:
    return dict(zip("xyzw", map(float, v), strict=True))


def depth_cloud(message: Recorded, info: CameraInfo, stride: int = CLOUD_STRIDE
                ) -> np.ndarray:
    """The depth frame's points (camera optical frame, metres), every ``stride``-th pixel."""
    depth = decode_depth(message.value, message.metadata, stride=stride)
    return depth_to_points(info.K, depth, stride=stride, sampled=True)


class Progress:
    """A line on stderr at most every PROGRESS_S while an export runs, and one at the end."""

    def __init__(self, total: int, what: str) -> None:
        self.total, self.what, self.done = total, what, 0
        self.start = self.shown = time.monotonic()

    def step(self) -> None:
        self.done += 1
        if time.monotonic() - self.shown >= PROGRESS_S:
            self.shown = time.monotonic()
            print(f"export: {self.what} {100 * self.done / max(self.total, 1):.0f}% "
                  f"({self.done} of {self.total} messages)", file=sys.stderr, flush=True)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.start


def session_length_s(tables: dict[str, pa.Table]) -> float:
    """Event time from the first message to the last."""
    stamps = [t.column("stamp_ns").to_numpy() for t in tables.values()]
    return (max(s.max() for s in stamps) - min(s.min() for s in stamps)) * 1e-9


class RrdExport:
    """Writes recorded messages to a rerun recording as the viewer node's views."""

    def __init__(self, path: Path, manifest: dict[str, Any], name: str) -> None:
        import rerun as rr

        from tuina.session_view import SessionView

        self.rec = rr.RecordingStream("tuina", recording_id=name)
        self.rec.save(path)
        self.view = SessionView(self.rec, arm_of(manifest))

    def write(self, message: Recorded) -> None:
        self.view.show(message.topic, message.stamp_ns, message.value, message.metadata)

    def close(self) -> None:
        self.rec.flush()
        self.rec.disconnect()


def export(folder: Path, tables: dict[str, pa.Table], out: Path, kind: str
           ) -> tuple[int, float]:
    """Write the recording at ``folder`` (its topics read as ``tables``) to ``out`` (``kind``
    mcap or rrd) through a partial file renamed when whole; (messages, seconds taken)."""
    manifest = read_manifest(folder)
    partial = out.with_name(out.name + ".partial")
    progress = Progress(sum(t.num_rows for t in tables.values()), out.name)
    writer = McapExport(partial, manifest) if kind == "mcap" else \
        RrdExport(partial, manifest, folder.name)
    try:
        for message in in_time_order(tables):
            writer.write(message)
            progress.step()
        writer.close()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, out)
    return progress.done, progress.elapsed_s


def arm_of(manifest: dict[str, Any]) -> str:
    """The arm the recorded graph drove (``fr3`` unless its robot node is the Baxter's)."""
    return "baxter_left" if "tuina-baxter" in manifest.get("graph", "") else "fr3"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", type=Path, help="a folder `tuina record` wrote")
    parser.add_argument("--mcap", type=Path, metavar="OUT", help="write an MCAP file "
                        "(Foxglove, Lichtblick, rerun open it)")
    parser.add_argument("--rrd", type=Path, metavar="OUT", help="write a rerun recording "
                        "(`rerun OUT` opens it)")


def main(args: Any) -> int:
    """Export the recording; one line per file written, one error line when it cannot."""
    if not args.mcap and not args.rrd:
        print("tuina export: error: nothing to write; pass --mcap OUT and/or --rrd OUT",
              file=sys.stderr)
        return 2
    try:
        tables = recorded_topics(args.recording)
    except RecordingError as err:
        print(f"tuina export: error: {err}", file=sys.stderr)
        return 2
    if not tables:
        print(f"tuina export: error: {args.recording} holds no messages; nothing to export",
              file=sys.stderr)
        return 2
    length = session_length_s(tables)
    for out, kind in ((args.mcap, "mcap"), (args.rrd, "rrd")):
        if out is None:
            continue
        if not out.parent.is_dir():
            print(f"tuina export: error: no folder {out.parent} to write {out.name} in; "
                  "create it or pass another path", file=sys.stderr)
            return 2
        count, took = export(args.recording, tables, out, kind)
        print(f"export: {out} ({count} messages of a {length:.1f} s session, "
              f"{out.stat().st_size / 1e6:.1f} MB) in {took:.1f} s", flush=True)
    return 0
