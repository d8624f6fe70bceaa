"""grounding: instruction -> acupoint boxes in the image (atlas backend).

Inputs: ``instruction`` (trigger for a new request), ``depth`` (trigger: the frame a pending
request is grounded on), ``camera_info`` (latest value), ``reground`` (events of the tracker:
a ``reground`` event grounds the last instruction again, on the first frame REGROUND_DELAY_S
after it, starting from where the body was last found).
Outputs: ``targets`` (GroundedTarget rows), ``events`` (errors such as an unknown acupoint).
"""

from __future__ import annotations

import sys

import numpy as np
from tuina.operators.grounding import (
    GroundingError,
    body_cloud,
    ground_acupoint,
    stroke_pixels,
    validate_stroke,
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
from tuina.node import OPEN3D_PARAMS, Outputs, configure, events, stamp_of

PARAMS = [
    Param("BACKEND", "choice", "atlas", "-", "grounding backend", choices=("atlas",)),
    Param("FORCE_LIGHT_N", "float", 4.0, "N", "target force for 'light'", low=0.5, high=15),
    Param("FORCE_MODERATE_N", "float", 6.0, "N", "target force for 'moderate'", low=0.5,
          high=15),
    Param("FORCE_FIRM_N", "float", 9.0, "N", "target force for 'firm'", low=0.5, high=15),
    Param("BODY_POSITION", "floats", [0.55, 0.2, 0.0], "m",
          "where the phantom is expected (base)", length=3),
    Param("BODY_YAW_DEG", "float", 90.0, "deg", "expected phantom heading"),
    Param("STROKE_LENGTH_M", "float", 0.05, "m",
          "path length of a 'stroke' instruction with none drawn",
          low=0.0, high=0.3),
    Param("ROI_MIN", "floats", [0.1, -0.9, -0.05], "m", "region of the body cloud (base)",
          length=3),
    Param("ROI_MAX", "floats", [1.0, 0.9, 0.3], "m", "region of the body cloud (base)",
          length=3),
    Param("SEED", "int", 0, "-", "seed of the table RANSAC"),
    Param("REGROUND_DELAY_S", "float", 1.0, "s",
          "after a re-grounding request, wait this long for the body to settle", low=0.0),
    *OPEN3D_PARAMS,
]


def main() -> None:
    """Ground each instruction on the next depth frame."""
    cfg = configure("grounding", PARAMS)
    import open3d as o3d
    from dora import Node

    o3d.utility.set_max_threads(cfg["OPEN3D_THREADS"])

    node = Node()
    out = Outputs(node)
    forces = {"light": cfg["FORCE_LIGHT_N"], "moderate": cfg["FORCE_MODERATE_N"],
              "firm": cfg["FORCE_FIRM_N"]}
    nominal = placement(tuple(cfg["BODY_POSITION"]), cfg["BODY_YAW_DEG"])
    info: CameraInfo | None = None
    pending: Instruction | None = None
    last: Instruction | None = None
    not_before = 0  # depth stamp a pending re-grounding waits for
    for event in events(node, lineage=out.lineage):
        stamp = stamp_of(event)
        if event["id"] == "camera_info":
            info = CameraInfo.from_arrow(event["value"])
        elif event["id"] == "instruction":
            pending, not_before = Instruction.from_arrow(event["value"]), 0
        elif event["id"] == "reground":
            if SessionEvent.from_arrow(event["value"]).kind != "reground" or last is None:
                continue
            if last.stroke_px:
                err = ("grounding: the body moved away from the drawn stroke; draw it again "
                       "on the new image")
                print(f"tuina-grounding: error: {err}", file=sys.stderr, flush=True)
                out.send("events", SessionEvent("error", err).to_arrow(), stamp, CAMERA_FRAME)
                continue
            pending, not_before = last, stamp + int(cfg["REGROUND_DELAY_S"] * 1e9)
            print(f"grounding: finding {last.text!r} again after the body moved", flush=True)
        elif (event["id"] == "depth" and pending is not None and info is not None
              and stamp >= not_before):
            request, pending = pending, None
            last = request
            try:
                target, found_body = ground(request, event, info, cfg, forces, nominal, stamp)
                nominal = nominal if found_body is None else found_body
            except (UnknownAcupoint, GroundingError) as err:
                print(f"tuina-grounding: error: {err}", file=sys.stderr, flush=True)
                out.send("events", SessionEvent("error", f"grounding: {err}").to_arrow(),
                         stamp, CAMERA_FRAME)
                continue
            out.send("targets", encode_targets([target]), stamp, CAMERA_FRAME)
            print(f"grounding: {target.code} ({target.name}) at px "
                  f"{np.round(target.center_px, 1).tolist()}, {target.technique} at "
                  f"{target.force_n} N, confidence {target.confidence:.2f}", flush=True)


def ground(request: Instruction, event: dict, info: CameraInfo, cfg: dict,
           forces: dict[str, float], nominal: np.ndarray,
           stamp: int) -> tuple[GroundedTarget, np.ndarray | None]:
    """One instruction on one depth frame -> a grounded target (or an error), and where the
    body was found (None for a drawn stroke).

    A drawn stroke needs no acupoint name: the path starts at its first pixel.
    """
    stroke = None
    if request.stroke_px:  # checked before any fitting: a bad drawing fails fast
        stroke = validate_stroke(request.stroke_px, info.width, info.height)
    parsed = parse_instruction(request.text, require_acupoint=stroke is None)
    force = forces[parsed.pressure]
    point = parsed.acupoint
    if point is None:
        box = np.concatenate([stroke.min(axis=0), stroke.max(axis=0)])
        return GroundedTarget("STROKE", "drawn stroke", 0, box.tolist(), stroke[0].tolist(),
                              stroke.ravel().tolist(), 1.0, force, parsed.technique,
                              stamp), None
    depth = decode_depth(event["value"], event["metadata"])
    rng = np.random.default_rng([cfg["SEED"], stamp])
    body = body_cloud(depth, info.K, info.extrinsics, np.asarray(cfg["ROI_MIN"]),
                      np.asarray(cfg["ROI_MAX"]), rng)
    found = ground_acupoint(point, body, info.K, info.extrinsics, nominal)
    if stroke is None and cfg["STROKE_LENGTH_M"] > 0 and parsed.technique == "stroke":
        stroke = stroke_pixels(point, found.fit.base_T_body, info.K,
                               np.linalg.inv(info.extrinsics), cfg["STROKE_LENGTH_M"])
    stroke_flat = [] if stroke is None else stroke.ravel().tolist()
    return GroundedTarget(point.code, point.pinyin, point.number, found.box.tolist(),
                          found.centre_px.tolist(), stroke_flat, found.fit.fitness, force,
                          parsed.technique, stamp), found.fit.base_T_body

if __name__ == "__main__":
    main()
