"""The one message contract: every stream's Arrow type, units, frame and metadata.

Every message travels as a pyarrow array plus a dora metadata dict. The metadata always
carries ``stamp_ns`` (event time set at the source: sensor or simulation time, ns),
``seq`` (per-output counter from 0) and ``frame_id`` (the coordinate frame of the payload).
Images carry ``width``/``height``/``encoding`` (and ``depth_scale`` for depth) in metadata;
every other stream is a single-row (or, for lists, multi-row) StructArray whose fields are
listed in ``STREAMS``. The message table of docs/reference.md is generated from ``STREAMS``.

Frames: ``base`` is the robot base frame (x forward, z up, metres); ``camera_color_optical``
is the OpenCV optical frame of the colour camera (x right, y down, z forward); ``tool`` is
the massage-ball contact point frame, z pointing into the body.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from tuina.operators.planner import Plan

BASE_FRAME = "base"
CAMERA_FRAME = "camera_color_optical"
TOOL_FRAME = "tool"


class MessageError(ValueError):
    """A payload that does not match the contract."""


@dataclass(frozen=True)
class Header:
    """Metadata every message carries."""

    stamp_ns: int
    seq: int
    frame_id: str

    def to_metadata(self, **extra: Any) -> dict[str, Any]:
        """Dora metadata dict for this header plus stream-specific extras."""
        return {"stamp_ns": int(self.stamp_ns), "seq": int(self.seq), "frame_id": self.frame_id,
                **extra}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> Header:
        """Read a header back; a missing key is a contract violation."""
        try:
            return cls(int(metadata["stamp_ns"]), int(metadata["seq"]), str(metadata["frame_id"]))
        except KeyError as missing:
            raise MessageError(f"metadata lacks {missing}: every message needs stamp_ns, seq, "
                               "frame_id") from None


def _vec(n: int) -> pa.DataType:
    return pa.list_(pa.float64(), n)


# --- images -----------------------------------------------------------------------------

def encode_rgb(image: np.ndarray, header: Header) -> tuple[pa.Array, dict[str, Any]]:
    """HxWx3 uint8 RGB image -> flat UInt8 array + metadata."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise MessageError(f"rgb must be HxWx3 uint8, got {image.shape} {image.dtype}")
    h, w, _ = image.shape
    return pa.array(image.reshape(-1)), header.to_metadata(width=w, height=h, encoding="rgb8")


def decode_rgb(array: pa.Array, metadata: dict[str, Any]) -> np.ndarray:
    """Flat UInt8 array + metadata -> HxWx3 uint8 image (zero-copy view)."""
    h, w = int(metadata["height"]), int(metadata["width"])
    flat = array.to_numpy(zero_copy_only=False)
    if flat.size != h * w * 3:
        raise MessageError(f"rgb payload has {flat.size} bytes, expected {h}x{w}x3")
    return flat.reshape(h, w, 3)


def encode_depth(depth_m: np.ndarray, header: Header,
                 depth_scale: float = 0.001) -> tuple[pa.Array, dict[str, Any]]:
    """HxW float depth in metres (NaN or 0 = no data) -> flat UInt16 z16 array + metadata."""
    if depth_m.ndim != 2:
        raise MessageError(f"depth must be HxW, got {depth_m.shape}")
    raw = np.nan_to_num(depth_m / depth_scale, nan=0.0, posinf=0.0, neginf=0.0)
    raw = np.clip(np.rint(raw), 0, 65535).astype(np.uint16)
    h, w = depth_m.shape
    return pa.array(raw.reshape(-1)), header.to_metadata(
        width=w, height=h, encoding="z16", depth_scale=float(depth_scale))


def decode_depth(array: pa.Array, metadata: dict[str, Any], stride: int = 1) -> np.ndarray:
    """Flat UInt16 z16 array + metadata -> HxW float32 metres, NaN where there is no data;
    with ``stride``, only every stride-th pixel of every stride-th row (the same values)."""
    h, w = int(metadata["height"]), int(metadata["width"])
    raw = array.to_numpy(zero_copy_only=False)
    if raw.size != h * w:
        raise MessageError(f"depth payload has {raw.size} values, expected {h}x{w}")
    raw = raw.reshape(h, w)[::stride, ::stride]
    depth = raw.astype(np.float32) * float(metadata["depth_scale"])
    depth[raw == 0] = np.nan
    return depth


# --- structured messages ------------------------------------------------------------------

@dataclass
class Message:
    """Base of the structured messages: a dataclass mapped 1:1 onto an Arrow struct."""

    ARROW_TYPE: ClassVar[pa.StructType]

    def to_row(self) -> dict[str, Any]:
        row = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = value.reshape(-1).tolist()
            row[f.name] = value
        return row

    def to_arrow(self) -> pa.StructArray:
        """One-row StructArray of this message."""
        return pa.array([self.to_row()], type=self.ARROW_TYPE)

    @classmethod
    def from_arrow(cls, array: pa.Array) -> Any:
        """Decode the first row of a StructArray."""
        if len(array) == 0:
            raise MessageError(f"{cls.__name__}: empty payload")
        if not array.type.equals(cls.ARROW_TYPE):
            raise MessageError(f"{cls.__name__}: payload type {array.type} does not match "
                               f"the contract {cls.ARROW_TYPE}")
        return cls.from_row(array[0].as_py())

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Any:
        return cls(**row)


@dataclass
class CameraInfo(Message):
    """Intrinsics (pinhole, pixels), distortion and the camera pose in the base frame."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: list[float]
    base_T_camera: list[float]  # 4x4 row-major, camera_color_optical -> base
    depth_scale: float

    ARROW_TYPE: ClassVar = pa.struct([
        ("width", pa.int32()), ("height", pa.int32()),
        ("fx", pa.float64()), ("fy", pa.float64()), ("cx", pa.float64()), ("cy", pa.float64()),
        ("distortion", pa.list_(pa.float64())), ("base_T_camera", _vec(16)),
        ("depth_scale", pa.float64()),
    ])

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    @property
    def extrinsics(self) -> np.ndarray:
        return np.asarray(self.base_T_camera, dtype=float).reshape(4, 4)


@dataclass
class Instruction(Message):
    """What the operator asks for: text, and optionally a stroke drawn on the image (pixels)."""

    text: str
    stroke_px: list[float] = field(default_factory=list)  # flat [u0, v0, u1, v1, ...]

    ARROW_TYPE: ClassVar = pa.struct([("text", pa.string()),
                                      ("stroke_px", pa.list_(pa.float64()))])


@dataclass
class GroundedTarget(Message):
    """One grounded acupoint (or stroke) in image pixels, with the requested force."""

    code: str
    name: str
    number: int
    box: list[float]  # x1, y1, x2, y2 in pixels of the rgb image
    center_px: list[float]  # u, v
    stroke_px: list[float]  # flat polyline in pixels, empty for a press
    confidence: float
    force_n: float
    technique: str  # press | knead | stroke
    source_stamp_ns: int  # stamp of the frame it was grounded on
    # what the backend knows of the surface there (base frame): a registered body model's
    # point and outward normal, and the registration's inlier RMSE; empty / NaN when it knows
    # only pixels (a vision-language box, a drawn stroke)
    model_point: list[float] = field(default_factory=list)
    model_normal: list[float] = field(default_factory=list)
    model_rmse_m: float = float("nan")
    hold_s: float = 0.0  # seconds at the force on the point as asked; 0: the planner's PRESS_S

    ARROW_TYPE: ClassVar = pa.struct([
        ("code", pa.string()), ("name", pa.string()), ("number", pa.int32()),
        ("box", _vec(4)), ("center_px", _vec(2)), ("stroke_px", pa.list_(pa.float64())),
        ("confidence", pa.float64()), ("force_n", pa.float64()), ("technique", pa.string()),
        ("source_stamp_ns", pa.int64()), ("model_point", pa.list_(pa.float64())),
        ("model_normal", pa.list_(pa.float64())), ("model_rmse_m", pa.float64()),
        ("hold_s", pa.float64()),
    ])


def encode_targets(targets: list[GroundedTarget]) -> pa.StructArray:
    """Several grounded targets as one multi-row StructArray."""
    return pa.array([t.to_row() for t in targets], type=GroundedTarget.ARROW_TYPE)


def decode_targets(array: pa.Array) -> list[GroundedTarget]:
    """Inverse of encode_targets."""
    if not array.type.equals(GroundedTarget.ARROW_TYPE):
        raise MessageError(f"targets: payload type {array.type} does not match the contract")
    return [GroundedTarget.from_row(r) for r in array.to_pylist()]


@dataclass
class TargetPose(Message):
    """6-DoF target of the tool contact point in the base frame, with the surface path."""

    code: str
    position: list[float]  # m, base
    quaternion: list[float]  # x, y, z, w; tool z axis points into the body
    normal: list[float]  # outward surface normal, base
    path: list[float]  # flat [x, y, z, ...] stroke points on the surface (m, base)
    force_n: float
    technique: str
    source_stamp_ns: int
    surface: str = "depth"  # where point and normal come from: depth | model (registered)
    view_angle_deg: float = float("nan")  # between the normal and the line to the camera
    hold_s: float = 0.0  # seconds at the force on the point as asked; 0: the planner's PRESS_S

    ARROW_TYPE: ClassVar = pa.struct([
        ("code", pa.string()), ("position", _vec(3)), ("quaternion", _vec(4)),
        ("normal", _vec(3)), ("path", pa.list_(pa.float64())), ("force_n", pa.float64()),
        ("technique", pa.string()), ("source_stamp_ns", pa.int64()), ("surface", pa.string()),
        ("view_angle_deg", pa.float64()), ("hold_s", pa.float64()),
    ])


@dataclass
class BodyMotion(Message):
    """Rigid body motion since the reference cloud: p_now = R p_ref + t (base frame).

    R, t change only when the motion criterion s(t, theta) passes; a status other than ok
    means this frame's estimate was not trusted (R, t then repeat the last good motion).
    """

    rotation: list[float]  # 3x3 row-major
    translation: list[float]  # m
    fitness: float  # fraction of the frame's body voxels that match the reference
    inlier_rmse: float  # m
    updated: bool  # the motion criterion passed: trajectories should follow
    status: str  # ok | no_reference | no_cloud | partial_view | low_fitness | large_motion | lost
    reference_stamp_ns: int  # stamp of the depth frame the reference cloud came from
    points: int  # body voxels in this frame
    coverage: float  # body voxels in this frame / in the reference
    twist: list[float]  # body velocity now: v (m/s, of the base origin), w (rad/s); p' = w x p + v

    ARROW_TYPE: ClassVar = pa.struct([
        ("rotation", _vec(9)), ("translation", _vec(3)), ("fitness", pa.float64()),
        ("inlier_rmse", pa.float64()), ("updated", pa.bool_()), ("status", pa.string()),
        ("reference_stamp_ns", pa.int64()), ("points", pa.int32()), ("coverage", pa.float64()),
        ("twist", _vec(6)),
    ])

    @classmethod
    def from_estimate(cls, estimate: Any, reference_stamp_ns: int) -> BodyMotion:
        """The message of a tracker's ``MotionEstimate``."""
        T = estimate.transform
        return cls(T[:3, :3].ravel().tolist(), T[:3, 3].tolist(), estimate.fitness,
                   estimate.inlier_rmse, estimate.updated, estimate.status, reference_stamp_ns,
                   estimate.points, estimate.coverage, estimate.twist.tolist())


@dataclass
class Trajectory(Message):
    """Time-parameterised tool trajectory; t_s relative to start_stamp_ns (robot clock)."""

    start_stamp_ns: int
    t_s: list[float]
    positions: list[float]  # flat N x 3, m, base
    quaternions: list[float]  # flat N x 4, x y z w
    forces_n: list[float]  # desired normal contact force per sample (0 = free motion)
    phases: list[str]  # approach | contact | press | stroke | retreat
    normals: list[float]  # flat N x 3 outward surface normal at each sample
    joints: list[float]  # flat N x number of joints, IK solution per sample (rad)
    code: str
    reference_stamp_ns: int  # depth frame the target was found on: body motions relative
    # to the tracker reference of this frame move the trajectory

    ARROW_TYPE: ClassVar = pa.struct([
        ("start_stamp_ns", pa.int64()), ("t_s", pa.list_(pa.float64())),
        ("positions", pa.list_(pa.float64())), ("quaternions", pa.list_(pa.float64())),
        ("forces_n", pa.list_(pa.float64())), ("phases", pa.list_(pa.string())),
        ("normals", pa.list_(pa.float64())), ("joints", pa.list_(pa.float64())),
        ("code", pa.string()), ("reference_stamp_ns", pa.int64()),
    ])

    def plan(self) -> Plan:
        """The trajectory's samples as the operators hold them."""
        from tuina.operators.planner import Plan

        n = len(self.t_s)
        return Plan(np.asarray(self.t_s, float), np.asarray(self.positions, float).reshape(n, 3),
                    np.asarray(self.quaternions, float).reshape(n, 4),
                    np.asarray(self.forces_n, float), list(self.phases),
                    np.asarray(self.normals, float).reshape(n, 3),
                    np.asarray(self.joints, float).reshape(n, -1) if n else np.zeros((0, 0)))


@dataclass
class Command(Message):
    """Reference for the robot: tool contact point pose + feed-forward twist (base frame);
    for joint-velocity robots (a Baxter) also the joint velocities of VBRM Eq. 19."""

    position: list[float]
    quaternion: list[float]
    twist: list[float]  # vx vy vz wx wy wz, m/s rad/s
    mode: str  # track | hold | stop
    phase: str
    force_target_n: float
    force_measured_n: float
    joint_velocities: list[float] = field(default_factory=list)  # rad/s; empty: Cartesian only
    normal: list[float] = field(default_factory=list)  # surface normal (out of the body)

    ARROW_TYPE: ClassVar = pa.struct([
        ("position", _vec(3)), ("quaternion", _vec(4)), ("twist", _vec(6)),
        ("mode", pa.string()), ("phase", pa.string()), ("force_target_n", pa.float64()),
        ("force_measured_n", pa.float64()), ("joint_velocities", pa.list_(pa.float64())),
        ("normal", pa.list_(pa.float64())),
    ])


@dataclass
class RobotState(Message):
    """Measured robot state; wrench is the force/torque the robot applies, base frame."""

    q: list[float]  # rad
    dq: list[float]  # rad/s
    tool_position: list[float]  # m, base: massage-ball contact point
    tool_quaternion: list[float]  # x y z w
    wrench: list[float]  # N, N m (O_F_ext_hat_K convention)
    status: str  # ok | waiting | released | finished | faulted:<fault> (supervisor.FAULTS)
    joint_torques: list[float] = field(default_factory=list)  # N m measured; empty: unknown

    ARROW_TYPE: ClassVar = pa.struct([
        ("q", pa.list_(pa.float64())), ("dq", pa.list_(pa.float64())),
        ("tool_position", _vec(3)), ("tool_quaternion", _vec(4)), ("wrench", _vec(6)),
        ("status", pa.string()), ("joint_torques", pa.list_(pa.float64())),
    ])


@dataclass
class GroundTruth(Message):
    """Simulation truth for scoring: body pose, acupoints, true contact (base frame)."""

    body_position: list[float]
    body_quaternion: list[float]
    acupoint_codes: list[str]
    acupoint_positions: list[float]  # flat N x 3
    acupoint_normals: list[float]  # flat N x 3
    contact_force: list[float]  # N, force the tool applies to the body, summed
    contact_point: list[float]  # m, force-weighted contact position (NaN when none)
    max_contact_force_n: float  # largest |force| over all physics steps since last message

    ARROW_TYPE: ClassVar = pa.struct([
        ("body_position", _vec(3)), ("body_quaternion", _vec(4)),
        ("acupoint_codes", pa.list_(pa.string())),
        ("acupoint_positions", pa.list_(pa.float64())),
        ("acupoint_normals", pa.list_(pa.float64())),
        ("contact_force", _vec(3)), ("contact_point", _vec(3)),
        ("max_contact_force_n", pa.float64()),
    ])


@dataclass
class SessionEvent(Message):
    """A session-level event: phase changes, errors, the end of a session."""

    kind: str  # phase | error | done | reground (find the target again) | abort | released
    # | step, finish (the console) | step_done (the session)
    detail: str
    fault: str = ""  # the robot's fault name (operators.supervisor.FAULTS) on its errors

    ARROW_TYPE: ClassVar = pa.struct([("kind", pa.string()), ("detail", pa.string()),
                                      ("fault", pa.string())])


@dataclass(frozen=True)
class StreamSpec:
    """One row of the contract table."""

    name: str
    payload: str
    units: str
    frame: str
    description: str


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec("rgb", "UInt8[H*W*3]; meta width, height, encoding=rgb8", "-",
               CAMERA_FRAME, "colour image"),
    StreamSpec("depth", "UInt16[H*W]; meta width, height, encoding=z16, depth_scale",
               "raw * depth_scale = m (z-depth), 0 = no data", CAMERA_FRAME,
               "depth aligned to colour"),
    StreamSpec("camera_info", "CameraInfo struct", "px, m", f"{CAMERA_FRAME} -> {BASE_FRAME}",
               "intrinsics, distortion, extrinsics base_T_camera, depth scale"),
    StreamSpec("instruction", "Instruction struct", "px", CAMERA_FRAME,
               "one step asked for on the console: text and optional drawn stroke"),
    StreamSpec("targets", "GroundedTarget struct[N]", "px, N", CAMERA_FRAME,
               "grounded acupoints: box, centre, stroke, force, technique"),
    StreamSpec("target_pose", "TargetPose struct", "m, N", BASE_FRAME,
               "6-DoF tool target, surface normal, stroke path"),
    StreamSpec("body_motion", "BodyMotion struct", "m", BASE_FRAME,
               "R, t of the body since the reference cloud, fitness, status"),
    StreamSpec("trajectory", "Trajectory struct", "s, m, N, rad", BASE_FRAME,
               "time-parameterised tool path with phases, forces and IK"),
    StreamSpec("command", "Command struct", "m, m/s, N", BASE_FRAME,
               "tool reference for the robot node"),
    StreamSpec("robot_state", "RobotState struct", "rad, m, N", BASE_FRAME,
               "joints, tool pose, applied wrench, safety status"),
    StreamSpec("ground_truth", "GroundTruth struct", "m, N", BASE_FRAME,
               "simulation truth: body pose, acupoints, contact"),
    StreamSpec("events", "SessionEvent struct", "-", "-", "phase changes, errors (a robot "
               "fault names one of operators.supervisor.FAULTS), released, done; the "
               "console's step (JSON: index, text, last) and finish, the session's "
               "step_done (JSON: the step's summary)"),
    StreamSpec("estop", "Bool[1]; meta stamp_ns = wall clock of the press", "-", "-",
               "the robot releases contact, then holds until restart"),
    StreamSpec("force_target", "Float64[1]", "N", "-", "the console's pressure slider: the "
               "running plan's force profile scaled to it"),
)
