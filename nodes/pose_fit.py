"""pose-fit: grounded pixels + depth -> 6-DoF tool target in the base frame.

Inputs: ``targets`` (trigger), ``depth`` and ``camera_info`` (latest values; the depth frame
the target was grounded on is used when still buffered).
Outputs: ``target_pose``, ``events`` (errors: no depth at the target, a target not known
well enough to press).

Trust, then press: the depth fit is used when the camera sees the surface within
MAX_VIEW_DEG of its normal and, when the grounding backend knows the surface (the atlas
backend's registered body model), agrees with the model; where the camera sees the point
badly (grazing, no depth, something else in front) and the registration fits well, the
model's point and normal are used and the target says so (``surface: model``); otherwise
the target is refused with the reason and a remedy, and nothing moves.
"""

from __future__ import annotations

import sys
from collections import OrderedDict

import numpy as np
from tuina.operators.grounding import GroundingError, body_cloud
from tuina.operators.posefit import (
    NoDepthError,
    StrokeOffBody,
    TrustConfig,
    TrustedSurface,
    UntrustedTarget,
    ball_intrusion,
    fit_target,
    stroke_path,
    target_orientation,
    trust_surface,
)

from tuina.messages import (
    BASE_FRAME,
    CameraInfo,
    GroundedTarget,
    SessionEvent,
    TargetPose,
    decode_depth,
    decode_targets,
)
from tuina.runtime import Outputs, configure, events, stamp_of
from tuina.settings.pose_fit import PARAMS


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
                    surface, path = fit_pose(target, depth, info, cfg, rng)
                except (NoDepthError, StrokeOffBody, GroundingError, ValueError) as err:
                    print(f"tuina-pose-fit: error: {target.code}: {err}", file=sys.stderr,
                          flush=True)
                    out.send("events", SessionEvent("error", f"pose-fit: {err}").to_arrow(),
                             stamp, BASE_FRAME)
                    continue
                p, n = surface.point, surface.normal
                q = target_orientation(n, np.asarray(cfg["TOOL_X_AXIS"]))
                pose = TargetPose(target.code, p.tolist(), q.tolist(), n.tolist(),
                                  path.ravel().tolist(), target.force_n, target.technique,
                                  target.source_stamp_ns, surface.surface,
                                  surface.view_angle_deg, target.hold_s)
                out.send("target_pose", pose.to_arrow(), stamp, BASE_FRAME)
                print(f"pose-fit: {target.code} at {np.round(p, 4).tolist()} m, normal "
                      f"{np.round(n, 3).tolist()} ({surface.why}), stroke of {len(path)} "
                      "points", flush=True)


def fit_pose(target: GroundedTarget, depth: np.ndarray, info: CameraInfo, cfg: dict,
             rng: np.random.Generator) -> tuple[TrustedSurface, np.ndarray]:
    """The trusted surface point and normal and (for strokes) the 3D path of one grounded
    target; UntrustedTarget when it is not known well enough to press."""
    uv = np.asarray(target.center_px)
    h, w = depth.shape
    if not (0 <= uv[0] <= w - 1 and 0 <= uv[1] <= h - 1):
        # a registered model may place it, but what the camera does not see is not pressed
        raise UntrustedTarget(f"{target.code} lies outside the camera's {w}x{h} image (at px "
                              f"{uv[0]:.0f}, {uv[1]:.0f}): not pressed; move the camera so it "
                              "sees the point")
    has_model = len(target.model_point) == 3 and len(target.model_normal) == 3
    try:
        fitted = fit_target(depth, info.K, info.extrinsics, uv, rng, cfg["POINT_RADIUS_M"],
                            cfg["NORMAL_RADIUS_M"])
    except NoDepthError:
        if not has_model:
            raise
        fitted = None
    trust = TrustConfig(cfg["MAX_VIEW_DEG"], cfg["MAX_DISAGREE_M"], cfg["MAX_DISAGREE_DEG"],
                        cfg["MAX_MODEL_RMSE_M"])
    surface = trust_surface(fitted, info.extrinsics[:3, 3],
                            np.asarray(target.model_point) if has_model else None,
                            np.asarray(target.model_normal) if has_model else None,
                            target.model_rmse_m, trust)
    body = body_cloud(depth, info.K, info.extrinsics, np.asarray(cfg["ROI_MIN"]),
                      np.asarray(cfg["ROI_MAX"]), rng)
    depth_in, where = ball_intrusion(surface.point, surface.normal, body, cfg["BALL_RADIUS_M"])
    if depth_in > cfg["BALL_CLEARANCE_M"]:
        raise UntrustedTarget(
            f"the {cfg['BALL_RADIUS_M'] * 2000:.0f} mm ball does not fit the surface at "
            f"{target.code}: the body reaches {depth_in * 1000:.0f} mm into it "
            f"{where * 1000:.0f} mm from the point, where it would press first; not pressed; "
            "choose a point nearby or a smaller ball")
    path = np.zeros((0, 3))
    if len(target.stroke_px) >= 4:
        path = stroke_path(depth, info.K, info.extrinsics, np.asarray(target.stroke_px),
                           body, cfg["STROKE_SPACING_M"])
    return surface, path

if __name__ == "__main__":
    main()
