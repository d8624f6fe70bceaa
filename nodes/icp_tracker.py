"""icp-tracker: follows the body by ICP between depth frames (VBRM Eq. 6-8), at camera rate.

Inputs: ``depth`` (trigger), ``camera_info`` and ``robot_state`` (latest values: the arm and
tool are masked out of the cloud by forward kinematics of the joints), ``target_pose`` (the
depth frame it was found on becomes the reference cloud).
Outputs: ``body_motion`` for every depth frame; ``events`` (``reground`` when the track is
lost: a motion too fast or too large to follow, or too many bad frames in a row; one
``error`` when the depth stream fails: frozen or without depth for a few frames, after which
no body motion is sent, so the robot releases contact and the controller hears silence).

Registration, chosen by measurement (``benchmarks/registration.py``): each frame's body
cloud, voxelised, is registered onto the reference cloud with open3d point-to-plane ICP
from the last estimate; the reference's table plane, normals and k-d tree are built once.
Why: 4.0 ms and 0.32 mm at the acupoint per frame, against 9.3 ms the other way round
(normals of every frame), 14 ms for open3d GICP and 4.8 ms for small_gicp GICP (as accurate,
one more dependency); point-to-point stalls at 3 mm on smooth skin.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tuina.operators.arms import arm_model
from tuina.operators.sensor import DepthWatch
from tuina.operators.tracking import (
    BodyTracker,
    RecentFrames,
    roi_points,
)

from tuina.messages import (
    BASE_FRAME,
    BodyMotion,
    CameraInfo,
    MessageError,
    RobotState,
    SessionEvent,
    TargetPose,
    decode_depth,
)
from tuina.runtime import Outputs, configure, events, stamp_of
from tuina.settings.icp_tracker import PARAMS, tracker_config

REFERENCE_FRAMES = 120  # 4 s at 30 Hz, ~20 MB of region-of-interest points


def frame_points(depth: np.ndarray, info: CameraInfo, cfg: dict) -> np.ndarray:
    """The base-frame points of a depth frame inside the body region."""
    if not depth.size:
        return np.zeros((0, 3))
    return roi_points(depth, info.K, info.extrinsics, cfg["STRIDE"], np.asarray(cfg["ROI_MIN"]),
                      np.asarray(cfg["ROI_MAX"]), sampled=True)


def decoded_depth(event: dict, stride: int) -> np.ndarray:
    """The depth frame (every ``stride``-th pixel); a frame that cannot be read is an empty
    one (the stream watch counts it) after one error line."""
    try:
        return decode_depth(event["value"], event["metadata"], stride)
    except MessageError as err:
        print(f"tuina-icp-tracker: error: {err}", flush=True)
        return np.full((0, 0), np.nan, np.float32)


def publish(out: Outputs, estimate: Any, reference_stamp_ns: int, status: str,
            stamp: int) -> str:
    """Send the body motion (and a ``reground`` event when the track is lost); a line when
    the status changes. Returns the status now."""
    out.send("body_motion", BodyMotion.from_estimate(estimate, reference_stamp_ns).to_arrow(),
             stamp, BASE_FRAME)
    if estimate.status != status:
        print(f"icp-tracker: {estimate.status} (fitness {estimate.fitness:.2f}, coverage "
              f"{estimate.coverage:.2f}, {estimate.points} voxels)", flush=True)
    if estimate.reground:
        out.send("events", SessionEvent("reground", f"icp-tracker: {estimate.status}; the "
                 "target must be found again").to_arrow(), stamp, BASE_FRAME)
    return estimate.status


def main() -> None:
    """Publish the body motion since the reference for every depth frame."""
    cfg = configure("icp-tracker", PARAMS)
    import open3d as o3d
    from dora import Node

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    o3d.utility.set_max_threads(cfg["OPEN3D_THREADS"])
    node = Node()
    out = Outputs(node)
    tracker = BodyTracker(tracker_config(cfg), cfg["SEED"])
    arm = arm_model(cfg["ROBOT"], cfg["TOOL_LENGTH_M"])
    info: CameraInfo | None = None
    q: np.ndarray | None = None
    state = None  # the latest robot_state message
    frames = RecentFrames(REFERENCE_FRAMES)
    status = stream_fault = ""
    watch = DepthWatch(cfg["FROZEN_FRAMES"], cfg["INVALID_FRAMES"], cfg["MIN_VALID_SHARE"])

    def chain(joints: np.ndarray | None) -> np.ndarray | None:
        return None if arm is None or joints is None else arm.chain(joints)

    for event in events(node, lineage=out.lineage):
        stamp = stamp_of(event)
        if event["id"] == "camera_info":
            info = CameraInfo.from_arrow(event["value"])
        elif event["id"] == "robot_state":
            state, q = event["value"], None  # decoded once a frame needs it (5x rarer)
        elif event["id"] == "target_pose" and info is not None and frames:
            ref_stamp, points, joints = frames.reference(
                TargetPose.from_arrow(event["value"]).source_stamp_ns)
            result = tracker.set_reference(points, ref_stamp, chain(joints), cfg["ARM_MASK_M"])
            print(f"icp-tracker: reference from frame {ref_stamp}: {result}, "
                  f"{0 if tracker.reference is None else len(tracker.reference.points)} "
                  "voxels", flush=True)
        elif event["id"] == "depth" and info is not None:
            if q is None and state is not None:
                q = np.asarray(RobotState.from_arrow(state).q)
            if arm is not None and q is None:
                continue  # without the joints the arm cannot be masked: no estimate
            depth = decoded_depth(event, cfg["STRIDE"])
            if problem := watch.frame(stamp, depth):
                if not stream_fault:
                    stream_fault = problem
                    print(f"tuina-icp-tracker: error: {problem}", flush=True)
                    out.send("events", SessionEvent("error", f"icp-tracker: {problem}")
                             .to_arrow(), stamp, BASE_FRAME)
                continue  # a failed stream's frames tell nothing of the body
            points = frame_points(depth, info, cfg)
            frames.add(stamp, points, q)
            estimate = tracker.update(points, stamp, chain(q), cfg["ARM_MASK_M"])
            status = publish(out, estimate, tracker.reference_stamp_ns, status, stamp)


if __name__ == "__main__":
    main()
