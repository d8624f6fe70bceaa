"""grounding: instruction -> acupoint boxes in the image (atlas or vision-language backend).

Inputs: ``instruction`` (trigger for a new request), ``depth`` (trigger: the frame a pending
request is grounded on), ``camera_info`` (latest value), ``reground`` (events of the tracker:
a ``reground`` event grounds the last instruction again, on the first frame REGROUND_DELAY_S
after it, starting from where the body was last found), ``reground_control`` (events of the
force controller: after its ``abort`` the last named point is found again the same way, for
a new plan; a drawn stroke waits for the person), ``rgb`` (BACKEND vlm: the frame a pending
request is asked about).
Outputs: ``targets`` (GroundedTarget rows), ``events`` (errors such as an unknown acupoint).

With BACKEND vlm the model answers on its own thread (``tuina.vlm.VLMWorker``): the loop goes
on taking frames while it thinks. An answer about a frame more than MAX_ANSWER_AGE_S older
than the newest one, or from before a body motion (a ``reground`` event), is dropped and the
question asked again on a new frame; an answer with no usable box grounds nothing, and the
raw answer is logged.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from tuina.operators.body_fit import BodyChecks, BodyFitSettings, ground_on_body
from tuina.operators.grounding import (
    GroundingError,
    GroundingRequests,
    body_cloud,
    check_posture,
    ground_acupoint,
    side_facing_arm,
    stroke_pixels,
    validate_click,
    validate_stroke,
)
from tuina.operators.instructions import InstructionError, parse_instruction
from tuina.operators.phantom import placement, right_side
from tuina.operators.session import CLICKED
from tuina.operators.vlm import choose_box, read_boxes

from tuina.body_model import AnnyBody
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
from tuina.runtime import Outputs, configure, events, fail, stamp_of
from tuina.settings.grounding import PARAMS, pressure_forces
from tuina.vlm import ModelFolderError, Request, Result, VLMGrounder, VLMWorker


def tell(out: Outputs, kind: str, detail: str, stamp: int) -> None:
    """An error: one line on stderr and an error event; else a line of progress."""
    if kind == "error":
        print(f"tuina-grounding: error: {detail}", file=sys.stderr, flush=True)
        out.send("events", SessionEvent("error", f"grounding: {detail}").to_arrow(), stamp,
                 CAMERA_FRAME)
    else:
        print(f"grounding: {detail}", flush=True)


def main() -> None:
    """Ground each instruction on the next depth frame."""
    cfg = configure("grounding", PARAMS)
    import open3d as o3d
    from dora import Node

    o3d.utility.set_max_threads(cfg["OPEN3D_THREADS"])
    worker = model_worker(cfg) if cfg["BACKEND"] == "vlm" else None
    human = human_body(cfg)
    node = Node()
    out = Outputs(node)
    forces = pressure_forces(cfg)
    nominal = placement(tuple(cfg["BODY_POSITION"]), cfg["BODY_YAW_DEG"])
    info: CameraInfo | None = None
    requests = GroundingRequests(cfg["REGROUND_DELAY_S"], cfg["MAX_ANSWER_AGE_S"],
                                 cfg["MAX_STALE_ANSWERS"])

    for event in events(node, lineage=out.lineage):
        stamp = stamp_of(event)
        requests.heard(stamp)
        for result in worker.poll() if worker is not None else []:
            target, problem = model_target(result, requests, forces)
            if problem is not None:
                tell(out, *problem, requests.newest)
            if target is not None:
                out.send("targets", encode_targets([target]), requests.newest, CAMERA_FRAME)
        if event["id"] == "camera_info":
            info = CameraInfo.from_arrow(event["value"])
        elif event["id"] == "instruction":
            requests.on_instruction(Instruction.from_arrow(event["value"]))
        elif event["id"] == "reground":
            if SessionEvent.from_arrow(event["value"]).kind == "reground" and \
                    (told := requests.on_reground(stamp)) is not None:
                tell(out, *told, stamp)
        elif event["id"] == "reground_control":
            if SessionEvent.from_arrow(event["value"]).kind == "abort" and \
                    (told := requests.on_abort(stamp)) is not None:
                tell(out, *told, stamp)
        elif event["id"] == "rgb" and worker is not None and \
                (request := requests.take(stamp, drawn=False)) is not None:
            ask_model(worker, request, event, cfg, out, stamp)
        elif event["id"] == "depth" and info is not None and (request := requests.take(
                stamp, drawn=None if worker is None else True)) is not None:
            try:
                target, found_body = ground(request, event, info, cfg, forces, nominal, stamp,
                                            human)
                nominal = nominal if found_body is None else found_body
            except (InstructionError, GroundingError) as err:
                tell(out, "error", str(err), stamp)
                continue
            out.send("targets", encode_targets([target]), stamp, CAMERA_FRAME)
            tell(out, "say", f"{target.code} ({target.name}) at px "
                 f"{np.round(target.center_px, 1).tolist()}, {target.technique} at "
                 f"{target.force_n} N, confidence {target.confidence:.2f}", stamp)


def model_worker(cfg: dict) -> VLMWorker:
    """The vision-language model on its own thread; a model folder it cannot use fails the
    node at once (the weights load on the thread, while the graph runs)."""
    grounder = VLMGrounder(cfg["MODEL_PATH"], cfg["DEVICE"], cfg["PROMPT"],
                           cfg["MAX_NEW_TOKENS"])
    try:
        grounder.check()
    except ModelFolderError as err:
        fail("grounding", str(err))
    return VLMWorker(grounder)


def ask_model(worker: VLMWorker, request: Instruction, event: dict, cfg: dict, out: Outputs,
              stamp: int) -> None:
    """Ask the model about this RGB frame for the instruction, or say why it cannot be asked."""
    try:
        parsed = parse_instruction(request.text)
        check_posture(parsed.acupoint, cfg["BODY_POSTURE"])
    except (InstructionError, GroundingError) as err:
        tell(out, "error", str(err), stamp)
        return
    image = np.array(decode_rgb(event["value"], event["metadata"]))
    worker.submit(Request(stamp, image, worker.grounder.question(
        parsed.acupoint.pinyin, parsed.acupoint.code), (request, parsed)))


def model_target(result: Result, requests: GroundingRequests, forces: dict[str, float]
                 ) -> tuple[GroundedTarget | None, tuple[str, str] | None]:
    """The target of one model answer, and what to tell: an error (the model failed, no
    usable box, answers too late), a line (asked again; grounded)."""
    request = result.request
    instruction, parsed = request.context
    if result.answer is None:
        return None, ("error", f"the model failed: {result.error}")
    if (late := requests.answer_problem(request.stamp_ns, instruction)) is not None:
        return None, late
    h, w = request.image.shape[:2]
    point = parsed.acupoint
    chosen = choose_box(read_boxes(result.answer.text, (w, h), result.answer.input_wh),
                        point, (w, h))
    if chosen.box is None:
        return None, ("error", f"{point.code} not grounded ({chosen.reason}); the model "
                      f"answered {result.answer.text!r}")
    x1, y1, x2, y2 = chosen.box.box
    target = GroundedTarget(point.code, point.pinyin, point.number, [x1, y1, x2, y2],
                            [(x1 + x2) / 2, (y1 + y2) / 2], [], 1.0,
                            forces[parsed.pressure], parsed.technique, request.stamp_ns,
                            hold_s=parsed.hold_s)
    return target, ("say", f"{target.code} ({target.name}) at px "
                    f"{np.round(target.center_px, 1).tolist()} from the model in "
                    f"{result.answer.seconds:.2f} s, {target.technique} at {target.force_n} N")


def human_body(cfg: dict) -> AnnyBody | None:
    """The parametric human body the atlas backend fits (anny, loaded once) with BODY_MODEL
    anny, else None; a missing anny fails the node with one line."""
    if cfg["BACKEND"] != "atlas" or cfg["BODY_MODEL"] != "anny":
        return None
    try:
        return AnnyBody()
    except RuntimeError as err:
        fail("grounding", str(err))


def ground(request: Instruction, event: dict, info: CameraInfo, cfg: dict,
           forces: dict[str, float], nominal: np.ndarray,
           stamp: int, human: AnnyBody | None = None
           ) -> tuple[GroundedTarget, np.ndarray | None]:
    """One instruction on one depth frame -> a grounded target (or an error), and where the
    body was found (None for a drawn stroke).

    A drawn stroke needs no acupoint name: the path starts at its first pixel. One point
    (a click on the image) is pressed or kneaded there.
    """
    stroke = clicked = None
    if len(request.stroke_px) == 2:  # one point: pressed where the person clicked
        clicked = validate_click(request.stroke_px, info.width, info.height)
    elif request.stroke_px:  # checked before any fitting: a bad drawing fails fast
        stroke = validate_stroke(request.stroke_px, info.width, info.height)
    parsed = parse_instruction(request.text, require_acupoint=stroke is None and
                               clicked is None)
    force = forces[parsed.pressure]
    if clicked is not None:  # the click wins over a name in the text: the person pointed
        if parsed.technique == "stroke":
            raise GroundingError("a stroke needs a line: draw at least two points, or press "
                                 "or knead at the clicked point")
        u, v = clicked
        return GroundedTarget(CLICKED, "clicked point", 0, [u - 8, v - 8, u + 8, v + 8],
                              [u, v], [], 1.0, force, parsed.technique, stamp,
                              hold_s=parsed.hold_s), None
    point = parsed.acupoint
    if point is not None:
        check_posture(point, cfg["BODY_POSTURE"])
    if point is not None and not parsed.side and human is None:
        # no side named: as the graph says, on the phantom (the fitted body decides its own)
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
    if human is not None:
        return ground_on_human(point, parsed, body, depth, info, cfg, force, nominal, stamp,
                               human)
    found = ground_acupoint(point, body, depth, info.K, info.extrinsics, nominal,
                            ball_radius_m=cfg["BALL_RADIUS_M"],
                            ball_clearance_m=cfg["BALL_CLEARANCE_M"],
                            approach_clearance_m=cfg["APPROACH_CLEARANCE_M"],
                            approach_length_m=cfg["APPROACH_LENGTH_M"])
    length = parsed.stroke_length_m or cfg["STROKE_LENGTH_M"]
    if stroke is None and length > 0 and parsed.technique == "stroke":
        stroke = stroke_pixels(point, found.fit.base_T_body, info.K,
                               np.linalg.inv(info.extrinsics), length)
    stroke_flat = [] if stroke is None else stroke.ravel().tolist()
    T = found.fit.base_T_body
    return GroundedTarget(point.code, point.pinyin, point.number, found.box.tolist(),
                          found.centre_px.tolist(), stroke_flat, found.fit.fitness, force,
                          parsed.technique, stamp,
                          (T[:3, :3] @ point.position + T[:3, 3]).tolist(),
                          (T[:3, :3] @ point.normal).tolist(), found.fit.inlier_rmse,
                          parsed.hold_s), T


def ground_on_human(point: Any, parsed: Any, body: np.ndarray, depth: np.ndarray,
                    info: CameraInfo, cfg: dict, force: float, nominal: np.ndarray,
                    stamp: int, human: AnnyBody) -> tuple[GroundedTarget, np.ndarray]:
    """The point on a human body model fitted to the depth (shape, arms, placement): the
    target, and where the body was found."""
    posture = cfg["BODY_POSTURE"]
    stroke_m = parsed.stroke_length_m or cfg["STROKE_LENGTH_M"]
    found = ground_on_body(
        point.code, bool(parsed.side), cfg["UNNAMED_SIDE"], body, nominal, depth, info.K,
        info.extrinsics, lambda shape: human.shaped(shape, posture), human.faces, posture,
        BodyChecks(cfg["BALL_RADIUS_M"], cfg["BALL_CLEARANCE_M"], cfg["APPROACH_CLEARANCE_M"],
                   cfg["APPROACH_LENGTH_M"], stroke_m if parsed.technique == "stroke" else 0.0),
        BodyFitSettings(max_point_sigma_mm=cfg["MAX_POINT_SIGMA_MM"]))
    u, v = found.centre_px
    return GroundedTarget(found.code, point.pinyin, point.number, [u - 8, v - 8, u + 8, v + 8],
                          found.centre_px.tolist(), found.stroke_px.ravel().tolist(),
                          found.fit.fitness, force, parsed.technique, stamp,
                          found.position.tolist(), found.normal.tolist(),
                          found.fit.inlier_rmse, parsed.hold_s), found.fit.base_T_body


if __name__ == "__main__":
    main()
