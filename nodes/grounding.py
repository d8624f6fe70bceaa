"""grounding: instruction -> acupoint boxes in the image (atlas or vision-language backend).

Inputs: ``instruction`` (trigger for a new request), ``depth`` (trigger: the frame a pending
request is grounded on), ``camera_info`` (latest value), ``reground`` (events of the tracker:
a ``reground`` event grounds the last instruction again, on the first frame REGROUND_DELAY_S
after it, starting from where the body was last found), ``rgb`` (BACKEND vlm: the frame a
pending request is asked about).
Outputs: ``targets`` (GroundedTarget rows), ``events`` (errors such as an unknown acupoint).

With BACKEND vlm the model answers on its own thread (``tuina.vlm.VLMWorker``): the loop goes
on taking frames while it thinks. An answer about a frame more than MAX_ANSWER_AGE_S older
than the newest one, or from before a body motion (a ``reground`` event), is dropped and the
question asked again on a new frame; an answer with no usable box grounds nothing, and the
raw answer is logged.
"""

from __future__ import annotations

import sys

import numpy as np

from tuina.messages import (
    CAMERA_FRAME,
    CameraInfo,
    GroundedTarget,
    Instruction,
    SessionEvent,
    decode_depth,
    decode_rgb,
    encode_targets,
)
from tuina.node import Outputs, configure, events, fail, stamp_of
from tuina.operators.grounding import (
    GroundingError,
    body_cloud,
    ground_acupoint,
    side_facing_arm,
    stroke_pixels,
    validate_stroke,
)
from tuina.operators.instructions import UnknownAcupoint, parse_instruction
from tuina.operators.phantom import placement, right_side
from tuina.operators.vlm import choose_box, read_boxes
from tuina.settings.grounding import PARAMS
from tuina.vlm import ModelFolderError, Request, Result, VLMGrounder, VLMWorker


def main() -> None:
    """Ground each instruction on the next depth frame."""
    cfg = configure("grounding", PARAMS)
    import open3d as o3d
    from dora import Node

    o3d.utility.set_max_threads(cfg["OPEN3D_THREADS"])

    worker = None
    if cfg["BACKEND"] == "vlm":
        grounder = VLMGrounder(cfg["MODEL_PATH"], cfg["DEVICE"], cfg["PROMPT"],
                               cfg["MAX_NEW_TOKENS"])
        try:
            grounder.check()  # the weights load on the worker thread, while the graph runs
        except ModelFolderError as err:
            fail("grounding", str(err))
        worker = VLMWorker(grounder)
    node = Node()
    out = Outputs(node)
    forces = {"light": cfg["FORCE_LIGHT_N"], "moderate": cfg["FORCE_MODERATE_N"],
              "firm": cfg["FORCE_FIRM_N"]}
    nominal = placement(tuple(cfg["BODY_POSITION"]), cfg["BODY_YAW_DEG"])
    info: CameraInfo | None = None
    pending: Instruction | None = None
    last: Instruction | None = None
    not_before = 0  # depth stamp a pending re-grounding waits for
    newest = 0  # stamp of the newest input (camera time)
    moved_at = 0  # stamp of the latest body motion the tracker reported
    stale = 0  # stale answers in a row

    def error(detail: str, stamp: int) -> None:
        print(f"tuina-grounding: error: {detail}", file=sys.stderr, flush=True)
        out.send("events", SessionEvent("error", f"grounding: {detail}").to_arrow(), stamp,
                 CAMERA_FRAME)

    def answered(result: Result) -> None:
        nonlocal pending, not_before, stale
        request = result.request
        instruction, parsed = request.context
        if result.answer is None:
            error(f"the model failed: {result.error}", newest)
            return
        if request.stamp_ns < moved_at or (newest - request.stamp_ns) * 1e-9 > \
                cfg["MAX_ANSWER_AGE_S"]:
            stale += 1
            why = ("the body moved since" if request.stamp_ns < moved_at else
                   f"{(newest - request.stamp_ns) * 1e-9:.2f} s old, limit "
                   f"{cfg['MAX_ANSWER_AGE_S']} s")
            if stale >= cfg["MAX_STALE_ANSWERS"]:
                error(f"{stale} answers in a row came too late ({why}); the model is slower "
                      "than MAX_ANSWER_AGE_S allows (raise it, or run on a GPU)", newest)
                stale = 0
                return
            print(f"grounding: dropped the answer about frame {request.stamp_ns} ({why}); "
                  "asking again", flush=True)
            pending, not_before = instruction, 0
            return
        stale = 0
        h, w = request.image.shape[:2]
        point = parsed.acupoint
        chosen = choose_box(read_boxes(result.answer.text, (w, h), result.answer.input_wh),
                            point, (w, h))
        if chosen.box is None:
            error(f"{point.code} not grounded ({chosen.reason}); the model answered "
                  f"{result.answer.text!r}", newest)
            return
        x1, y1, x2, y2 = chosen.box.box
        target = GroundedTarget(point.code, point.pinyin, point.number, [x1, y1, x2, y2],
                                [(x1 + x2) / 2, (y1 + y2) / 2], [], 1.0,
                                forces[parsed.pressure], parsed.technique, request.stamp_ns)
        out.send("targets", encode_targets([target]), newest, CAMERA_FRAME)
        print(f"grounding: {target.code} ({target.name}) at px "
              f"{np.round(target.center_px, 1).tolist()} from the model in "
              f"{result.answer.seconds:.2f} s, {target.technique} at {target.force_n} N",
              flush=True)

    for event in events(node, lineage=out.lineage):
        stamp = stamp_of(event)
        newest = max(newest, stamp)
        if worker is not None:
            for result in worker.poll():
                answered(result)
        if event["id"] == "camera_info":
            info = CameraInfo.from_arrow(event["value"])
        elif (event["id"] == "rgb" and worker is not None and pending is not None
              and not pending.stroke_px and stamp >= not_before):
            request, pending = pending, None
            last = request
            try:
                parsed = parse_instruction(request.text)
            except UnknownAcupoint as err:
                error(str(err), stamp)
                continue
            image = np.array(decode_rgb(event["value"], event["metadata"]))
            worker.submit(Request(stamp, image, worker.grounder.question(
                parsed.acupoint.pinyin, parsed.acupoint.code), (request, parsed)))
        elif event["id"] == "instruction":
            pending, not_before = Instruction.from_arrow(event["value"]), 0
        elif event["id"] == "reground":
            if SessionEvent.from_arrow(event["value"]).kind != "reground" or last is None:
                continue
            if last.stroke_px:
                error("the body moved away from the drawn stroke; draw it again on the new "
                      "image", stamp)
                continue
            moved_at = stamp
            pending, not_before = last, stamp + int(cfg["REGROUND_DELAY_S"] * 1e9)
            print(f"grounding: finding {last.text!r} again after the body moved", flush=True)
        elif (event["id"] == "depth" and pending is not None and info is not None
              and stamp >= not_before and (worker is None or pending.stroke_px)):
            request, pending = pending, None
            last = request
            try:
                target, found_body = ground(request, event, info, cfg, forces, nominal, stamp)
                nominal = nominal if found_body is None else found_body
            except (UnknownAcupoint, GroundingError) as err:
                error(str(err), stamp)
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
    if point is not None and not parsed.side:  # no side named: as the graph says
        point = {"facing": lambda p: side_facing_arm(p, nominal), "left": lambda p: p,
                 "right": right_side}[cfg["UNNAMED_SIDE"]](point)
    if point is None:
        box = np.concatenate([stroke.min(axis=0), stroke.max(axis=0)])
        return GroundedTarget("STROKE", "drawn stroke", 0, box.tolist(), stroke[0].tolist(),
                              stroke.ravel().tolist(), 1.0, force, parsed.technique,
                              stamp), None
    depth = decode_depth(event["value"], event["metadata"])
    rng = np.random.default_rng([cfg["SEED"], stamp])
    body = body_cloud(depth, info.K, info.extrinsics, np.asarray(cfg["ROI_MIN"]),
                      np.asarray(cfg["ROI_MAX"]), rng)
    found = ground_acupoint(point, body, info.K, info.extrinsics, nominal,
                            ball_radius_m=cfg["BALL_RADIUS_M"],
                            ball_clearance_m=cfg["BALL_CLEARANCE_M"],
                            approach_clearance_m=cfg["APPROACH_CLEARANCE_M"],
                            approach_length_m=cfg["APPROACH_LENGTH_M"])
    if stroke is None and cfg["STROKE_LENGTH_M"] > 0 and parsed.technique == "stroke":
        stroke = stroke_pixels(point, found.fit.base_T_body, info.K,
                               np.linalg.inv(info.extrinsics), cfg["STROKE_LENGTH_M"])
    stroke_flat = [] if stroke is None else stroke.ravel().tolist()
    T = found.fit.base_T_body
    return GroundedTarget(point.code, point.pinyin, point.number, found.box.tolist(),
                          found.centre_px.tolist(), stroke_flat, found.fit.fitness, force,
                          parsed.technique, stamp,
                          (T[:3, :3] @ point.position + T[:3, 3]).tolist(),
                          (T[:3, :3] @ point.normal).tolist(), found.fit.inlier_rmse), T

if __name__ == "__main__":
    main()
