"""grounding: instruction -> acupoint boxes in the image (atlas backend).

Inputs: ``instruction`` (trigger for a new request), ``depth`` (trigger: the frame a pending
request is grounded on), ``camera_info`` (latest value).
Outputs: ``targets`` (GroundedTarget rows), ``events`` (errors such as an unknown acupoint).
"""

from __future__ import annotations

import sys

import numpy as np
from tuina.operators.geometry import depth_to_points, transform_points
from tuina.operators.grounding import (
    GroundingError,
    acupoint_box,
    fit_phantom,
    remove_table,
    stroke_pixels,
)
from tuina.operators.instructions import UnknownAcupoint, parse_instruction
from tuina.operators.phantom import placement

from tuina.config import Param
from tuina.messages import (
    CAMERA_FRAME,
    CameraInfo,
    GroundedTarget,
    Instruction,
    SessionEvent,
    decode_depth,
    encode_targets,
)
from tuina.node import Outputs, configure, events, stamp_of

PARAMS = [
    Param("BACKEND", "choice", "atlas", "-", "grounding backend", choices=("atlas",)),
    Param("FORCE_LIGHT_N", "float", 4.0, "N", "target force for 'light'", low=0.5, high=15),
    Param("FORCE_MODERATE_N", "float", 6.0, "N", "target force for 'moderate'", low=0.5,
          high=15),
    Param("FORCE_FIRM_N", "float", 9.0, "N", "target force for 'firm'", low=0.5, high=15),
    Param("BODY_POSITION", "floats", [0.55, 0.2, 0.0], "m",
          "where the phantom is expected (base)", length=3),
    Param("BODY_YAW_DEG", "float", 90.0, "deg", "expected phantom heading"),
    Param("STROKE_LENGTH_M", "float", 0.05, "m", "length of the stroke after the press",
          low=0.0, high=0.3),
    Param("ROI_MIN", "floats", [0.1, -0.9, -0.05], "m", "region of the body cloud (base)",
          length=3),
    Param("ROI_MAX", "floats", [1.0, 0.9, 0.3], "m", "region of the body cloud (base)",
          length=3),
    Param("SEED", "int", 0, "-", "seed of the table RANSAC"),
]


def main() -> None:
    """Ground each instruction on the next depth frame."""
    cfg = configure("grounding", PARAMS)
    from dora import Node

    node = Node()
    out = Outputs(node)
    forces = {"light": cfg["FORCE_LIGHT_N"], "moderate": cfg["FORCE_MODERATE_N"],
              "firm": cfg["FORCE_FIRM_N"]}
    nominal = placement(tuple(cfg["BODY_POSITION"]), cfg["BODY_YAW_DEG"])
    info: CameraInfo | None = None
    pending: Instruction | None = None
    for event in events(node):
        stamp = stamp_of(event)
        if event["id"] == "camera_info":
            info = CameraInfo.from_arrow(event["value"])
        elif event["id"] == "instruction":
            pending = Instruction.from_arrow(event["value"])
        elif event["id"] == "depth" and pending is not None and info is not None:
            request, pending = pending, None
            try:
                parsed = parse_instruction(request.text)
                depth = decode_depth(event["value"], event["metadata"])
                base_T_cam = info.extrinsics
                pts = transform_points(base_T_cam, depth_to_points(info.K, depth, stride=2))
                roi = np.all((pts >= cfg["ROI_MIN"]) & (pts <= cfg["ROI_MAX"]), axis=1)
                body, _ = remove_table(pts[roi], np.random.default_rng([cfg["SEED"], stamp]))
                fit = fit_phantom(body, nominal)
                cam_T_base = np.linalg.inv(base_T_cam)
                point = parsed.acupoint
                box = acupoint_box(point, fit.base_T_body, info.K, cam_T_base)
                centre = transform_points(fit.base_T_body, point.position[None])
                uv = (info.K @ transform_points(cam_T_base, centre)[0])
                stroke = (stroke_pixels(point, fit.base_T_body, info.K, cam_T_base,
                                        cfg["STROKE_LENGTH_M"])
                          if cfg["STROKE_LENGTH_M"] > 0 else np.zeros((0, 2)))
                if request.stroke_px:
                    stroke = np.asarray(request.stroke_px, float).reshape(-1, 2)
                target = GroundedTarget(
                    point.code, point.pinyin, point.number, box.tolist(),
                    (uv[:2] / uv[2]).tolist(), stroke.ravel().tolist(), fit.fitness,
                    forces[parsed.pressure], parsed.technique, stamp)
                out.send("targets", encode_targets([target]), stamp, CAMERA_FRAME)
                print(f"grounding: {point.code} ({point.pinyin}) at px "
                      f"{np.round(target.center_px, 1).tolist()}, {parsed.pressure} "
                      f"{forces[parsed.pressure]} N, fitness {fit.fitness:.2f}", flush=True)
            except (UnknownAcupoint, GroundingError) as err:
                print(f"tuina-grounding: error: {err}", file=sys.stderr, flush=True)
                out.send("events", SessionEvent("error", f"grounding: {err}").to_arrow(),
                         stamp, CAMERA_FRAME)


if __name__ == "__main__":
    main()
