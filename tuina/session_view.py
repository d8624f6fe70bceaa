"""What a session looks like in rerun: the views the viewer node logs live and ``tuina export
--rrd`` writes from a recording, one message at a time on the ``event_time`` timeline.

Entities (base frame ``world``): ``world/camera`` (extrinsics and pinhole) with its ``rgb``
image, the grounded ``boxes`` on it and the ``depth`` image; ``world/body`` (the depth cloud,
every CLOUD_STRIDE-th pixel); ``world/targets`` (the target and its outward normal, labelled);
``world/plan`` (the planned path), ``world/tool`` and ``world/tool_path`` (the path the tool
took);
``world/arm`` (the arm's joints from its URDF model, posed by the joint states; the arm and
the tool at most at ``arm_hz``, the tool's path drawn once a second); the time
series ``force/measured``, ``force/target`` and, in the sim, ``force/true``;
``tracker/motion_mm`` and ``tracker/fitness``; ``log/phase``, ``log/tracker`` and
``log/events``. Images, clouds, the arm and the tool path are logged at most at their own
rates (``Rates``): what comes faster is dropped, never queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tuina.messages import (
    BodyMotion,
    CameraInfo,
    Command,
    GroundTruth,
    RobotState,
    SessionEvent,
    TargetPose,
    Trajectory,
    decode_depth,
    decode_rgb,
    decode_targets,
)
from tuina.operators.geometry import depth_to_points, transform_points

TIMELINE = "event_time"
WALL_CLOCK_NS = 10**18  # event times past 2001 are a sensor's wall clock; the sim's count from 0
CLOUD_STRIDE = 8  # 4 800 points of a 640x480 frame
TOOL_PATH_POINTS = 900  # the newest tool positions drawn (30 s of states at 30 Hz)


@dataclass(frozen=True)
class Rates:
    """The most often each heavy view is logged (Hz): the colour image at ``image_hz``, the
    depth image and its cloud at ``cloud_hz``, the arm and the tool at ``arm_hz``, the tool's
    whole path once a second."""

    image_hz: float = 10.0
    cloud_hz: float = 2.0
    arm_hz: float = 30.0


class SessionView:
    """Logs a session's messages to a rerun recording stream as its views."""

    def __init__(self, rec: Any, arm: str = "fr3", rates: Rates = Rates()) -> None:
        import rerun as rr

        self.rr, self.rec = rr, rec
        self.periods_ns = {"rgb": 1e9 / rates.image_hz, "depth": 1e9 / rates.cloud_hz,
                           "arm": 1e9 / rates.arm_hz, "tool_path": 1e9}
        self.last_ns: dict[str, int] = {}
        self.info: CameraInfo | None = None
        self.tool: list[np.ndarray] = []
        self.arm = arm_model(arm)
        rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        rec.send_blueprint(layout())

    def due(self, view: str, stamp_ns: int) -> bool:
        """Whether ``view`` may be logged at ``stamp_ns`` (its rate not yet reached)."""
        last = self.last_ns.get(view)
        if last is not None and 0 <= stamp_ns - last < self.periods_ns[view]:
            return False
        self.last_ns[view] = stamp_ns
        return True

    def show(self, topic: str, stamp_ns: int, value: pa.Array, metadata: dict[str, Any]
             ) -> None:
        """Log one message (``topic``: ``node/output`` or the input's id)."""
        stream = topic.rsplit("/", 1)[-1]
        rr, rec = self.rr, self.rec
        if stamp_ns >= WALL_CLOCK_NS:
            rec.set_time(TIMELINE, timestamp=np.datetime64(int(stamp_ns), "ns"))
        else:
            rec.set_time(TIMELINE, duration=np.timedelta64(int(stamp_ns), "ns"))
        if stream == "camera_info":
            info = CameraInfo.from_arrow(value)
            if self.info is None or info != self.info:
                self.info = info
                T = info.extrinsics
                rec.log("world/camera", rr.Transform3D(translation=T[:3, 3], mat3x3=T[:3, :3]),
                        rr.Pinhole(image_from_camera=info.K, width=info.width,
                                   height=info.height, camera_xyz=rr.ViewCoordinates.RDF))
        elif stream == "rgb" and self.due("rgb", stamp_ns):
            rec.log("world/camera/rgb", rr.Image(np.array(decode_rgb(value, metadata))
                                                 ).compress(jpeg_quality=80))
        elif stream == "depth" and self.due("depth", stamp_ns):
            scale = float(metadata["depth_scale"])
            raw = value.to_numpy(zero_copy_only=False).reshape(
                int(metadata["height"]), int(metadata["width"]))
            rec.log("world/camera/depth", rr.DepthImage(raw, meter=1.0 / scale))
            if self.info is not None:
                depth = decode_depth(value, metadata, stride=CLOUD_STRIDE)
                cloud = transform_points(self.info.extrinsics, depth_to_points(
                    self.info.K, depth, stride=CLOUD_STRIDE, sampled=True))
                rec.log("world/body", rr.Points3D(cloud, radii=0.002,
                                                  colors=[200, 170, 150]))
        elif stream == "targets":
            targets = decode_targets(value)
            rec.log("world/camera/rgb/boxes", rr.Boxes2D(
                array=[t.box for t in targets], array_format=rr.Box2DFormat.XYXY,
                labels=[f"{t.code} {t.technique} {t.force_n:.0f} N" for t in targets]))
        elif stream == "target_pose":
            pose = TargetPose.from_arrow(value)
            rec.log("world/targets", rr.Points3D([pose.position], radii=0.006,
                                                 labels=[pose.code], colors=[255, 60, 60]),
                    rr.Arrows3D(origins=[pose.position],
                                vectors=[np.asarray(pose.normal) * 0.05],
                                colors=[255, 60, 60]))
        elif stream == "trajectory":
            plan = Trajectory.from_arrow(value)
            rec.log("world/plan", rr.LineStrips3D(
                [np.asarray(plan.positions, float).reshape(-1, 3)], radii=0.002,
                colors=[30, 150, 255], labels=[plan.code]))
        elif stream == "robot_state" and self.due("arm", stamp_ns):
            self.robot(RobotState.from_arrow(value), stamp_ns)
        elif stream == "command":  # every one: two fields read, not the whole message
            if not value.type.equals(Command.ARROW_TYPE):
                raise ValueError(f"command: payload type {value.type} is not the contract's")
            rec.log("force/measured", rr.Scalars(value.field("force_measured_n")[0].as_py()))
            rec.log("force/target", rr.Scalars(value.field("force_target_n")[0].as_py()))
        elif stream == "ground_truth":
            truth = GroundTruth.from_arrow(value)
            rec.log("force/true", rr.Scalars(float(np.linalg.norm(truth.contact_force))))
        elif stream == "body_motion":
            motion = BodyMotion.from_arrow(value)
            rec.log("tracker/motion_mm", rr.Scalars(
                float(np.linalg.norm(motion.translation)) * 1e3))
            rec.log("tracker/fitness", rr.Scalars(motion.fitness))
            if motion.status != "ok":
                rec.log("log/tracker", rr.TextLog(motion.status, level=rr.TextLogLevel.WARN))
        elif stream.startswith("events"):
            event = SessionEvent.from_arrow(value)
            if event.kind == "phase":
                rec.log("log/phase", rr.TextLog(event.detail))
            else:
                level = rr.TextLogLevel.ERROR if event.kind == "error" else \
                    rr.TextLogLevel.INFO
                rec.log("log/events", rr.TextLog(f"{event.kind}: {event.detail}",
                                                  level=level))

    def robot(self, state: RobotState, stamp_ns: int) -> None:
        """The arm, the tool and its path (a state at most every ``arm_hz``)."""
        rr, rec = self.rr, self.rec
        self.tool.append(np.asarray(state.tool_position, float))
        del self.tool[:-TOOL_PATH_POINTS]
        if self.due("tool_path", stamp_ns):
            rec.log("world/tool_path", rr.LineStrips3D([np.array(self.tool)], radii=0.0015,
                                                       colors=[255, 200, 0]))
        rec.log("world/tool", rr.Points3D([self.tool[-1]], radii=0.01, colors=[255, 200, 0]))
        if self.arm is not None:
            joints = self.arm(np.asarray(state.q, float))
            if joints is not None:
                rec.log("world/arm", rr.LineStrips3D([joints], radii=0.02,
                                                     colors=[230, 230, 230]),
                        rr.Points3D(joints, radii=0.03, colors=[120, 120, 120]))


def layout() -> Any:
    """The viewer's panels: the scene in 3D beside the camera's image, the force against its
    target, the tracker and the log."""
    import rerun.blueprint as rrb

    return rrb.Blueprint(rrb.Horizontal(
        rrb.Spatial3DView(origin="world", name="scene"),
        rrb.Vertical(rrb.Spatial2DView(origin="world/camera", name="camera"),
                     rrb.TimeSeriesView(origin="force", name="force (N)"),
                     rrb.TimeSeriesView(origin="tracker", name="tracker"),
                     rrb.TextLogView(origin="log", name="log"),
                     row_shares=[3, 2, 1, 1]),
        column_shares=[3, 2]), collapse_panels=True)


def arm_model(arm: str) -> Any:
    """A function from joint positions to the arm's joint origins and tool point (base frame,
    from the arm's URDF through pinocchio), or None when the model cannot be loaded."""
    import pinocchio as pin

    from tuina.operators.arms import load_arm

    try:
        model, flange, _ = load_arm(arm)
    except ValueError:  # no model for this arm here (a PlanningError): no arm in the view
        return None
    data = model.createData()
    flange_id = model.getFrameId(flange)

    def pose(q: np.ndarray) -> np.ndarray | None:
        if len(q) != model.nq:
            return None
        pin.framesForwardKinematics(model, data, q)
        joints = [data.oMi[j].translation.copy() for j in range(1, model.njoints)]
        return np.array([*joints, data.oMf[flange_id].translation.copy()])

    return pose
