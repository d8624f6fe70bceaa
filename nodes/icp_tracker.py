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

from collections import OrderedDict

import numpy as np
from tuina.operators.arms import ARMS, arm_model
from tuina.operators.sensor import DepthWatch
from tuina.operators.tracking import (
    BodyTracker,
    MotionEstimate,
    TrackerConfig,
    roi_points,
)

from tuina.config import Param
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
from tuina.node import OPEN3D_PARAMS, Outputs, configure, events, stamp_of

PARAMS = [
    Param("VOXEL_M", "float", 0.01, "m", "voxel size of the registered clouds", low=0.002),
    Param("MAX_CORRESPONDENCE_M", "float", 0.03, "m", "ICP correspondence distance", low=0.001),
    Param("ITERATIONS", "int", 30, "-", "ICP iterations per frame", low=1, high=200),
    Param("MIN_FITNESS", "float", 0.6, "-",
          "share of a frame's body voxels that must match the reference", low=0, high=1),
    Param("MIN_POINTS", "int", 300, "-", "fewest body voxels for a valid frame", low=10),
    Param("MIN_COVERAGE", "float", 0.5, "-",
          "fewest body voxels of a frame relative to the reference (body out of view)",
          low=0, high=1),
    Param("TRANSLATION_THRESHOLD_M", "float", 0.0005, "m",
          "motion criterion s(t, theta): translation that updates the trajectory", low=0),
    Param("ROTATION_THRESHOLD_DEG", "float", 0.1, "deg",
          "motion criterion s(t, theta): rotation that updates the trajectory", low=0),
    Param("MAX_BODY_SPEED", "float", 0.08, "m/s",
          "faster body motion between frames is a large motion: the track is lost", low=0),
    Param("MAX_BODY_RATE_DEG_S", "float", 20.0, "deg/s",
          "faster body rotation between frames is a large motion", low=0),
    Param("MAX_TOTAL_M", "float", 0.06, "m",
          "motion from the reference beyond which the target is found again", low=0),
    Param("MAX_TOTAL_DEG", "float", 10.0, "deg",
          "rotation from the reference beyond which the target is found again", low=0),
    Param("LOST_AFTER_FRAMES", "int", 15, "-", "consecutive bad frames that lose the track",
          low=1),
    Param("ROI_MIN", "floats", [0.1, -0.9, -0.05], "m", "body region (base)", length=3),
    Param("ROI_MAX", "floats", [1.0, 0.9, 0.3], "m", "body region (base)", length=3),
    Param("TABLE_MARGIN_M", "float", 0.012, "m", "points this close to the table are dropped",
          low=0),
    Param("ROBOT", "choice", "fr3", "-", "arm to mask out of the cloud (none: no arm in view)",
          choices=(*ARMS, "none")),
    Param("ARM_MASK_M", "float", 0.08, "m", "radius around the arm's links, hand and tool "
          "removed from the cloud", low=0),
    Param("TOOL_LENGTH_M", "float", 0.0466, "m",
          "massage-ball contact point past franky's end-effector frame", low=0.0),
    Param("STRIDE", "int", 4, "px", "pixel stride of the depth back-projection", low=1, high=8),
    Param("SEED", "int", 0, "-", "seed of the table plane RANSAC"),
    Param("FROZEN_FRAMES", "int", 2, "-", "identical depth frames in a row after the first "
          "that make the camera frozen (0: never; a noise-free simulated camera)", low=0),
    Param("INVALID_FRAMES", "int", 3, "-", "depth frames in a row with too few valid pixels "
          "that make the depth invalid", low=1),
    Param("MIN_VALID_SHARE", "float", 0.25, "-", "fewest pixels with depth in a valid frame",
          low=0, high=1),
    *OPEN3D_PARAMS,
]


REFERENCE_FRAMES = 120  # 4 s at 30 Hz, ~20 MB of region-of-interest points


def tracker_config(cfg: dict) -> TrackerConfig:
    """Tracker parameters from a validated env: block."""
    return TrackerConfig(
        voxel_m=cfg["VOXEL_M"], max_correspondence_m=cfg["MAX_CORRESPONDENCE_M"],
        iterations=cfg["ITERATIONS"], min_points=cfg["MIN_POINTS"],
        min_coverage=cfg["MIN_COVERAGE"], min_fitness=cfg["MIN_FITNESS"],
        translation_threshold_m=cfg["TRANSLATION_THRESHOLD_M"],
        rotation_threshold_deg=cfg["ROTATION_THRESHOLD_DEG"],
        max_speed_m_s=cfg["MAX_BODY_SPEED"], max_rate_deg_s=cfg["MAX_BODY_RATE_DEG_S"],
        max_total_m=cfg["MAX_TOTAL_M"], max_total_deg=cfg["MAX_TOTAL_DEG"],
        lost_after_frames=cfg["LOST_AFTER_FRAMES"], table_margin_m=cfg["TABLE_MARGIN_M"])


def to_message(estimate: MotionEstimate, reference_stamp_ns: int) -> BodyMotion:
    """The body_motion message of one estimate."""
    T = estimate.transform
    return BodyMotion(T[:3, :3].ravel().tolist(), T[:3, 3].tolist(), estimate.fitness,
                      estimate.inlier_rmse, estimate.updated, estimate.status,
                      reference_stamp_ns, estimate.points, estimate.coverage,
                      estimate.twist.tolist())


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
    # recent body regions with the joints at their time: grounding and pose-fit take a second
    # or more, and the reference must be the frame the target was found on
    frames: OrderedDict[int, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
    roi_min, roi_max = np.asarray(cfg["ROI_MIN"]), np.asarray(cfg["ROI_MAX"])
    status = ""

    watch = DepthWatch(cfg["FROZEN_FRAMES"], cfg["INVALID_FRAMES"], cfg["MIN_VALID_SHARE"])
    stream_fault = ""

    def frame_points(depth: np.ndarray) -> np.ndarray:
        return roi_points(depth, info.K, info.extrinsics, cfg["STRIDE"], roi_min, roi_max,
                          sampled=True)

    def chain(joints: np.ndarray | None) -> np.ndarray | None:
        return None if arm is None or joints is None else arm.chain(joints)

    for event in events(node, lineage=out.lineage):
        stamp = stamp_of(event)
        if event["id"] == "camera_info":
            info = CameraInfo.from_arrow(event["value"])
        elif event["id"] == "robot_state":
            state, q = event["value"], None  # decoded once a frame needs it (5x rarer)
        elif event["id"] == "target_pose" and info is not None and frames:
            source = TargetPose.from_arrow(event["value"]).source_stamp_ns
            ref_stamp = source if source in frames else next(reversed(frames))
            points, joints = frames[ref_stamp]
            result = tracker.set_reference(points.astype(float), ref_stamp, chain(joints),
                                           cfg["ARM_MASK_M"])
            print(f"icp-tracker: reference from frame {ref_stamp}: {result}, "
                  f"{0 if tracker.reference is None else len(tracker.reference.points)} "
                  "voxels", flush=True)
        elif event["id"] == "depth" and info is not None:
            if q is None and state is not None:
                q = np.asarray(RobotState.from_arrow(state).q)
            if arm is not None and q is None:
                continue  # without the joints the arm cannot be masked: no estimate
            try:
                depth = decode_depth(event["value"], event["metadata"], cfg["STRIDE"])
            except MessageError as err:
                print(f"tuina-icp-tracker: error: {err}", flush=True)
                depth = np.full((0, 0), np.nan, np.float32)
            if problem := watch.frame(stamp, depth):
                if not stream_fault:
                    stream_fault = problem
                    print(f"tuina-icp-tracker: error: {problem}", flush=True)
                    out.send("events", SessionEvent("error", f"icp-tracker: {problem}")
                             .to_arrow(), stamp, BASE_FRAME)
                continue  # a failed stream's frames tell nothing of the body
            points = frame_points(depth) if depth.size else np.zeros((0, 3))
            frames[stamp] = (points.astype(np.float32), q)
            while len(frames) > REFERENCE_FRAMES:
                frames.popitem(last=False)
            estimate = tracker.update(points, stamp, chain(q), cfg["ARM_MASK_M"])
            out.send("body_motion", to_message(estimate, tracker.reference_stamp_ns).to_arrow(),
                     stamp, BASE_FRAME)
            if estimate.status != status:
                status = estimate.status
                print(f"icp-tracker: {status} (fitness {estimate.fitness:.2f}, coverage "
                      f"{estimate.coverage:.2f}, {estimate.points} voxels)", flush=True)
            if estimate.reground:
                out.send("events", SessionEvent("reground", f"icp-tracker: {status}; the "
                         "target must be found again").to_arrow(), stamp, BASE_FRAME)


if __name__ == "__main__":
    main()
