"""pose-fit: grounded pixels + depth -> 6-DoF tool target in the base frame.

Inputs: ``targets`` (trigger), ``depth`` and ``camera_info`` (latest values; the depth frame
the target was grounded on is used when still buffered).
Outputs: ``target_pose``, ``events`` (errors: no depth at the target).
"""

from __future__ import annotations

import sys
from collections import OrderedDict

import numpy as np
from tuina.operators.grounding import GroundingError, body_cloud
from tuina.operators.posefit import (
    NoDepthError,
    StrokeOffBody,
    fit_target,
    stroke_path,
    target_orientation,
)

from tuina.config import Param
from tuina.messages import (
    BASE_FRAME,
    CameraInfo,
    GroundedTarget,
    SessionEvent,
    TargetPose,
    decode_depth,
    decode_targets,
)
from tuina.node import Outputs, configure, events, stamp_of

PARAMS = [
    Param("POINT_RADIUS_M", "float", 0.005, "m", "radius of skin the target point is read from",
          low=0.001, high=0.05),
    Param("NORMAL_RADIUS_M", "float", 0.015, "m", "radius of skin the normal is fitted on",
          low=0.003, high=0.08),
    Param("STROKE_SPACING_M", "float", 0.005, "m", "arc-length spacing of the stroke path",
          low=0.001, high=0.05),
    Param("TOOL_X_AXIS", "floats", [1.0, 0.0, 0.0], "-",
          "preferred tool x axis (base); the wrist turns least from it", length=3),
    Param("ROI_MIN", "floats", [0.1, -0.9, -0.05], "m", "region of the body cloud (base)",
          length=3),
    Param("ROI_MAX", "floats", [1.0, 0.9, 0.3], "m", "region of the body cloud (base)",
          length=3),
    Param("SEED", "int", 0, "-", "RANSAC seed"),
]


def main() -> None:
    """Fit a target pose for every grounded target."""
    cfg = configure("pose-fit", PARAMS)
    from dora import Node

    node = Node()
    out = Outputs(node)
    frames: OrderedDict[int, tuple] = OrderedDict()
    info: CameraInfo | None = None
    for event in events(node, lineage=out.lineage):
        stamp = stamp_of(event)
        if event["id"] == "camera_info":
            info = CameraInfo.from_arrow(event["value"])
        elif event["id"] == "depth":
            frames[stamp] = (event["value"], dict(event["metadata"]))
            while len(frames) > 8:
                frames.popitem(last=False)
        elif event["id"] == "targets" and info is not None and frames:
            for target in decode_targets(event["value"]):
                raw = frames.get(target.source_stamp_ns) or next(reversed(frames.values()))
                depth = decode_depth(*raw)
                rng = np.random.default_rng([cfg["SEED"], target.source_stamp_ns])
                try:
                    p, n, path = fit_pose(target, depth, info, cfg, rng)
                except (NoDepthError, StrokeOffBody, GroundingError, ValueError) as err:
                    print(f"tuina-pose-fit: error: {target.code}: {err}", file=sys.stderr,
                          flush=True)
                    out.send("events", SessionEvent("error", f"pose-fit: {err}").to_arrow(),
                             stamp, BASE_FRAME)
                    continue
                q = target_orientation(n, np.asarray(cfg["TOOL_X_AXIS"]))
                pose = TargetPose(target.code, p.tolist(), q.tolist(), n.tolist(),
                                  path.ravel().tolist(), target.force_n, target.technique,
                                  target.source_stamp_ns)
                out.send("target_pose", pose.to_arrow(), stamp, BASE_FRAME)
                print(f"pose-fit: {target.code} at {np.round(p, 4).tolist()} m, normal "
                      f"{np.round(n, 3).tolist()}, stroke of {len(path)} points", flush=True)


def fit_pose(target: GroundedTarget, depth: np.ndarray, info: CameraInfo, cfg: dict,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Surface point, outward normal and (for strokes) the 3D path of one grounded target."""
    uv = np.asarray(target.center_px)
    p, n = fit_target(depth, info.K, info.extrinsics, uv, rng, cfg["POINT_RADIUS_M"],
                      cfg["NORMAL_RADIUS_M"])
    path = np.zeros((0, 3))
    if len(target.stroke_px) >= 4:
        body = body_cloud(depth, info.K, info.extrinsics, np.asarray(cfg["ROI_MIN"]),
                          np.asarray(cfg["ROI_MAX"]), rng)
        path = stroke_path(depth, info.K, info.extrinsics, np.asarray(target.stroke_px),
                           body, cfg["STROKE_SPACING_M"])
    return p, n, path


if __name__ == "__main__":
    main()
