"""icp-tracker: follows the body by ICP between depth frames (VBRM Eq. 6-8).

Inputs: ``depth`` (trigger), ``camera_info`` and ``robot_state`` (latest values; the tool is
masked out of the cloud), ``target_pose`` (the frame it was planned on becomes the
reference).
Outputs: ``body_motion`` at camera rate.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from tuina.operators.geometry import depth_to_points, transform_points
from tuina.operators.tracking import BodyTracker, TrackerConfig, body_cloud

from tuina.config import Param
from tuina.messages import BASE_FRAME, BodyMotion, CameraInfo, RobotState, TargetPose, decode_depth
from tuina.node import Outputs, configure, events, stamp_of

PARAMS = [
    Param("VOXEL_M", "float", 0.01, "m", "voxel size of the registered clouds", low=0.002),
    Param("MAX_CORRESPONDENCE_M", "float", 0.03, "m", "ICP correspondence distance", low=0.001),
    Param("MIN_FITNESS", "float", 0.6, "-", "below this the track is lost", low=0, high=1),
    Param("MIN_POINTS", "int", 300, "-", "fewest body points for a valid cloud", low=10),
    Param("TRANSLATION_THRESHOLD_M", "float", 0.003, "m",
          "motion criterion s(t, theta): translation that triggers an update", low=0),
    Param("ROTATION_THRESHOLD_DEG", "float", 1.0, "deg",
          "motion criterion s(t, theta): rotation that triggers an update", low=0),
    Param("MAX_STEP_M", "float", 0.03, "m", "larger jumps between frames are rejected", low=0),
    Param("ROI_MIN", "floats", [0.2, -0.7, 0.01], "m", "body region (base)", length=3),
    Param("ROI_MAX", "floats", [0.9, 0.7, 0.3], "m", "body region (base)", length=3),
    Param("TOOL_MASK_M", "float", 0.08, "m", "radius around the tool removed from the cloud",
          low=0),
    Param("STRIDE", "int", 2, "px", "pixel stride of the depth back-projection", low=1, high=8),
]


def main() -> None:
    """Publish the body motion since the reference for every depth frame."""
    cfg = configure("icp-tracker", PARAMS)
    from dora import Node

    node = Node()
    out = Outputs(node)
    tracker = BodyTracker(TrackerConfig(
        voxel_m=cfg["VOXEL_M"], max_correspondence_m=cfg["MAX_CORRESPONDENCE_M"],
        min_points=cfg["MIN_POINTS"], min_fitness=cfg["MIN_FITNESS"],
        translation_threshold_m=cfg["TRANSLATION_THRESHOLD_M"],
        rotation_threshold_deg=cfg["ROTATION_THRESHOLD_DEG"], max_step_m=cfg["MAX_STEP_M"]))
    info: CameraInfo | None = None
    tool: np.ndarray | None = None
    frames: OrderedDict[int, tuple] = OrderedDict()
    roi_min, roi_max = np.asarray(cfg["ROI_MIN"]), np.asarray(cfg["ROI_MAX"])

    def cloud(raw: tuple) -> np.ndarray:
        depth = decode_depth(*raw)
        pts = transform_points(info.extrinsics, depth_to_points(info.K, depth, cfg["STRIDE"]))
        return body_cloud(pts, roi_min, roi_max, tool, cfg["TOOL_MASK_M"])

    for event in events(node):
        stamp = stamp_of(event)
        if event["id"] == "camera_info":
            info = CameraInfo.from_arrow(event["value"])
        elif event["id"] == "robot_state":
            tool = np.asarray(RobotState.from_arrow(event["value"]).tool_position)
        elif event["id"] == "target_pose" and info is not None and frames:
            source = TargetPose.from_arrow(event["value"]).source_stamp_ns
            raw = frames.get(source) or next(reversed(frames.values()))
            tracker.set_reference(cloud(raw))
        elif event["id"] == "depth" and info is not None:
            raw = (event["value"], dict(event["metadata"]))
            frames[stamp] = raw
            while len(frames) > 8:
                frames.popitem(last=False)
            estimate = tracker.update(cloud(raw))
            T = estimate.transform
            msg = BodyMotion(T[:3, :3].ravel().tolist(), T[:3, 3].tolist(), estimate.fitness,
                             estimate.inlier_rmse, estimate.updated, estimate.status)
            out.send("body_motion", msg.to_arrow(), stamp, BASE_FRAME)


if __name__ == "__main__":
    main()
