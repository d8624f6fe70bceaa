"""``tuina eval grounding``: acupoint grounding success rates, as HMR-1's Table 2 counts them.

A question is answered when the backend's box overlaps the labelled one by at least an IoU
threshold (0.3, 0.5, 0.75); a question left not grounded counts as a miss. Questions come
from a MedMassage-format dataset (``--dataset DIR``) or from images the sim world renders
with their true boxes (``--sim N``: body pose, camera pose and lighting varied).

Dataset format (Qwen-VL's fine-tuning JSON, as HMR-1 trains on): ``DIR/annotations.json``,
a list of records::

    {"image": "images/0001.png",
     "conversations": [{"from": "user", "value": "<img>images/0001.png</img>Where is Zusanli?"},
                       {"from": "assistant",
                        "value": "<ref>Zusanli</ref><box>(412,230),(447,268)</box>"}, ...]}

Each user/assistant pair is one question; the answer's box, in thousandths of the image
(Qwen-VL's [0, 1000)), is the label; the acupoint is the one the question names.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tuina import jsontext
from tuina.evaluation.seeds import over_seeds, spread_text
from tuina.operators.instructions import parse_instruction
from tuina.operators.phantom import ATLAS, Acupoint
from tuina.operators.vlm import NORMALISED, box_iou, choose_box, read_boxes

THRESHOLDS = (0.3, 0.5, 0.75)
# the figures given over seeds, each with its bad direction
SPREAD = {"success_iou30": "min", "success_iou50": "min", "success_iou75": "min",
          "mean_iou": "min", "centre_error_px_mean": "max"}
QUESTIONS = ("Where is {pinyin}?", "Please locate the acupoint {pinyin} ({code}).",
             "Find {code} on the body and give its bounding box.",
             "Which region is the {pinyin} point?")
PATCH_RADIUS_M = 0.015  # a box covers the skin within 15 mm of the point


class DatasetError(ValueError):
    """The dataset cannot be read; the message names the file and the problem."""


@dataclass
class Question:
    """One question about one image, with its labelled box (camera pixels)."""

    text: str
    acupoint: Acupoint
    box: tuple[float, float, float, float]


@dataclass
class Sample:
    """One image and its questions; sim samples also carry depth and the camera as the
    predictor is given it (the intrinsics it reports, the pose a calibration finds)."""

    image: np.ndarray  # HxWx3 uint8 RGB
    questions: list[Question]
    name: str = ""
    depth: np.ndarray | None = None
    K: np.ndarray | None = None
    base_T_camera: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Predictor = Callable[[Sample, Question], "tuple[float, float, float, float] | None"]


def to_thousandths(box: tuple[float, ...], w: int, h: int) -> str:
    """A pixel box as Qwen-VL's ``(x1,y1),(x2,y2)`` on [0, 1000)."""
    x1, y1, x2, y2 = (min(int(round(v / s * NORMALISED)), 999)
                      for v, s in zip(box, (w, h, w, h), strict=True))
    return f"({x1},{y1}),({x2},{y2})"


def read_dataset(folder: Path) -> list[Sample]:
    """Every image and question of a MedMassage-format dataset."""
    import cv2

    index = folder / "annotations.json"
    try:
        records = json.loads(index.read_text())
    except FileNotFoundError:
        raise DatasetError(f"no {index}; a dataset folder holds annotations.json (see "
                           "`tuina eval grounding --help`)") from None
    except json.JSONDecodeError as err:
        raise DatasetError(f"{index} is not JSON ({err})") from None
    samples = []
    for k, record in enumerate(records):
        where = f"{index} record {k}"
        image_file = folder / str(record.get("image", ""))
        image = cv2.imread(str(image_file), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"{where}: cannot read image {image_file}")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        turns = record.get("conversations", [])
        questions = []
        for user, answer in zip(turns[::2], turns[1::2], strict=False):
            text = str(user.get("value", "")).split("</img>")[-1].strip()
            point = parse_instruction(text, require_acupoint=False).acupoint
            boxes = read_boxes(str(answer.get("value", "")), (w, h))
            if point is None or len(boxes) != 1:
                raise DatasetError(f"{where}: question {text!r} needs one known acupoint and "
                                   f"an answer with one box, got {answer.get('value')!r}")
            questions.append(Question(text, point, boxes[0].box))
        samples.append(Sample(image, questions, str(record.get("image", ""))))
    return samples


def write_dataset(samples: list[Sample], folder: Path) -> Path:
    """Write samples as a MedMassage-format dataset (PNG images, annotations.json)."""
    import cv2

    (folder / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for k, sample in enumerate(samples):
        name = f"images/{k:05d}.png"
        cv2.imwrite(str(folder / name), cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR))
        h, w = sample.image.shape[:2]
        turns = []
        for q in sample.questions:
            turns += [{"from": "user", "value": f"<img>{name}</img>{q.text}"},
                      {"from": "assistant", "value": f"<ref>{q.acupoint.pinyin}</ref><box>"
                       f"{to_thousandths(q.box, w, h)}</box>"}]
        records.append({"id": f"{k:05d}", "image": name, "conversations": turns})
    (folder / "annotations.json").write_text(json.dumps(records, indent=1, ensure_ascii=False))
    return folder


def evaluate(samples: list[Sample], predict: Predictor) -> dict[str, Any]:
    """Success rates at each IoU threshold, overall and per acupoint (at IoU 0.5)."""
    ious: list[float] = []
    by_point: dict[str, list[float]] = {}
    centre_px: list[float] = []  # predicted box centre to the labelled one
    label_px: list[float] = []  # the labelled box's shorter side
    for sample in samples:
        for q in sample.questions:
            box = predict(sample, q)
            iou = 0.0 if box is None else box_iou(box, q.box)
            ious.append(iou)
            by_point.setdefault(q.acupoint.code, []).append(iou)
            label_px.append(float(min(q.box[2] - q.box[0], q.box[3] - q.box[1])))
            if box is not None:
                centre_px.append(float(np.hypot((box[0] + box[2] - q.box[0] - q.box[2]) / 2,
                                                (box[1] + box[3] - q.box[1] - q.box[3]) / 2)))
    n = len(ious)
    out: dict[str, Any] = {"n": n}
    for t in THRESHOLDS:
        out[f"success_iou{round(t * 100)}"] = (sum(i >= t for i in ious) / n) if n else 0.0
    out["per_acupoint_iou50"] = {code: {"n": len(v), "success": sum(i >= 0.5 for i in v) / len(v)}
                                 for code, v in sorted(by_point.items())}
    out["mean_iou"] = float(np.mean(ious)) if n else 0.0
    out["not_grounded"] = n - len(centre_px)
    out["centre_error_px_mean"] = float(np.mean(centre_px)) if centre_px else float("nan")
    out["centre_error_px_p95"] = (float(np.percentile(centre_px, 95)) if centre_px
                                  else float("nan"))
    out["label_short_side_px_median"] = float(np.median(label_px)) if n else float("nan")
    return out


def render_sim(n: int, seed: int = 0, log: Any = print) -> list[Sample]:
    """``n`` labelled images of the sim world: body, camera and lighting drawn per image."""
    from tuina.evaluation.perception import eval_world_config
    from tuina.operators.geometry import intrinsics_matrix, transform_points
    from tuina.operators.phantom import placement
    from tuina.operators.sensor import DepthNoise, apply_depth_noise, quantize_depth
    from tuina.sim.world import MassageWorld, nominal_base_T_camera

    rng = np.random.default_rng(seed)
    cfg = eval_world_config()
    cfg = replace(cfg, initial_q=(-2.4, -0.6, 0.0, -2.6, 0.0, 1.9, 0.785))  # arm parked
    samples = []
    with MassageWorld(cfg) as world:
        K = intrinsics_matrix(*world.true_intrinsics())  # where things appear: the labels
        K_reported = intrinsics_matrix(*world.intrinsics())  # what the predictor is given
        q = np.asarray(cfg.initial_q)
        for k in range(n):
            body = placement((cfg.body_position[0] + rng.uniform(-0.05, 0.05),
                              cfg.body_position[1] + rng.uniform(-0.05, 0.05), 0.0),
                             cfg.body_yaw_deg + rng.uniform(-15.0, 15.0))
            position = np.asarray(cfg.camera_position) + rng.uniform(-0.08, 0.08, 3)
            target = np.asarray(cfg.camera_target) + rng.uniform(-0.05, 0.05, 3)
            cam_cfg = replace(cfg, camera_position=tuple(position), camera_target=tuple(target))
            camera = nominal_base_T_camera(cam_cfg)
            frame = world.render_scene(q, body, camera, light=rng.uniform(0.5, 1.3))
            questions = []
            for point in ATLAS:
                box = patch_box(frame.depth, K, camera,
                                transform_points(body, point.position[None])[0], PATCH_RADIUS_M)
                if box is None:
                    continue
                template = QUESTIONS[int(rng.integers(len(QUESTIONS)))]
                questions.append(Question(template.format(pinyin=point.pinyin, code=point.code),
                                          point, tuple(float(v) for v in box)))
            # the depth a D455 would give: noise, holes, z16 steps (the camera node's model)
            depth = quantize_depth(apply_depth_noise(frame.depth, K[0, 0], DepthNoise(), rng))
            samples.append(Sample(frame.rgb, questions, f"sim-{k:05d}", depth, K_reported,
                                  calibrated(camera, rng), {"base_T_body": body}))
            if (k + 1) % 10 == 0:
                log(f"rendered {k + 1}/{n} images")
    return samples


def calibrated(camera: np.ndarray, rng: np.random.Generator, mm: float = 1.0,
               deg: float = 0.1) -> np.ndarray:
    """The camera pose as a calibration finds it: off the true one by about ``mm`` and
    ``deg`` (sigma, per axis), what `tuina calibrate` reaches in the sim world."""
    from scipy.spatial.transform import Rotation

    error = np.eye(4)
    error[:3, :3] = Rotation.from_rotvec(np.radians(rng.normal(0.0, deg, 3))).as_matrix()
    error[:3, 3] = rng.normal(0.0, mm * 1e-3, 3)
    return camera @ error


def patch_box(depth: np.ndarray, K: np.ndarray, base_T_camera: np.ndarray,
              point_base: np.ndarray, radius_m: float) -> np.ndarray | None:
    """A label made apart from any predictor: the box around the rendered pixels whose
    surface lies within ``radius_m`` of the point (the skin patch the camera sees, with the
    true depth and camera); None when the point itself is hidden or the patch is cut by
    the image's edge."""
    from tuina.operators.geometry import backproject, project

    h, w = depth.shape
    point_camera = (np.linalg.inv(base_T_camera) @ np.append(point_base, 1.0))[:3]
    if point_camera[2] <= 0:
        return None
    u0, v0 = project(K, np.eye(4), point_camera[None])[0]
    reach = int(np.ceil(radius_m * K[0, 0] / point_camera[2] * 3)) + 2  # oblique skin too
    left, top = max(int(u0) - reach, 0), max(int(v0) - reach, 0)
    right, bottom = min(int(u0) + reach + 1, w), min(int(v0) + reach + 1, h)
    if right <= left or bottom <= top:
        return None
    v, u = np.mgrid[top:bottom, left:right]
    z = depth[top:bottom, left:right]
    known = np.isfinite(z) & (z > 0)
    near = np.zeros_like(known)
    points = backproject(K, np.stack([u[known], v[known]], axis=1).astype(float),
                         z[known].astype(float))
    near[known] = np.linalg.norm(points - point_camera, axis=1) <= radius_m
    centre = (int(round(v0)) - top, int(round(u0)) - left)
    if not (0 <= centre[0] < near.shape[0] and 0 <= centre[1] < near.shape[1]
            and near[centre]):
        return None  # something nearer hides the point
    box = np.array([u[near].min() - 0.5, v[near].min() - 0.5, u[near].max() + 0.5,
                    v[near].max() + 0.5])
    if box[0] < 0 or box[1] < 0 or box[2] > w - 1 or box[3] > h - 1:
        return None
    return box


def atlas_predictor(seed: int = 0) -> Predictor:
    """The atlas backend: fit the phantom to the sample's depth, project the asked point."""
    from tuina.config import load
    from tuina.operators.grounding import (
        GroundingError,
        acupoint_box,
        body_cloud,
        register_phantom,
    )
    from tuina.operators.phantom import placement
    from tuina.settings.grounding import PARAMS

    cfg = load("grounding", PARAMS, {})  # the grounding node's defaults
    nominal = placement(tuple(cfg["BODY_POSITION"]), cfg["BODY_YAW_DEG"])
    roi_min, roi_max = np.asarray(cfg["ROI_MIN"]), np.asarray(cfg["ROI_MAX"])
    fits: dict[int, Any] = {}

    def predict(sample: Sample, question: Question) -> tuple[float, ...] | None:
        if sample.depth is None:
            raise DatasetError("the atlas backend needs depth; use --sim N (or --backend vlm)")
        key = id(sample)
        if key not in fits:
            try:
                body = body_cloud(sample.depth, sample.K, sample.base_T_camera, roi_min, roi_max,
                                  np.random.default_rng(seed))
                fits[key] = register_phantom(body, nominal, sample.depth, sample.K,
                                             sample.base_T_camera).base_T_body
            except GroundingError:
                fits[key] = None
        if fits[key] is None:
            return None
        box = acupoint_box(question.acupoint, fits[key], sample.K,
                           np.linalg.inv(sample.base_T_camera), PATCH_RADIUS_M)
        return tuple(float(v) for v in box)

    return predict


def vlm_predictor(model_path: str, log: Any = print) -> Predictor:
    """The VLM backend: ask the model, read its answer as the grounding node does."""
    from tuina.vlm import VLMGrounder

    grounder = VLMGrounder(model_path)
    grounder.check()

    def predict(sample: Sample, question: Question) -> tuple[float, ...] | None:
        answer = grounder.ask(sample.image, question.text)
        h, w = sample.image.shape[:2]
        result = choose_box(read_boxes(answer.text, (w, h), answer.input_wh),
                            question.acupoint, (w, h))
        if result.box is None:
            log(f"not grounded ({result.reason}): {answer.text!r}")
            return None
        return result.box.box

    return predict


def table(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (HMR-1 Table 2's columns)."""
    rows = ["| backend | questions (seed 0) | IoU=0.3 | IoU=0.5 | IoU=0.75 (each the mean over "
            "the seeds) |", "|---|---|---|---|---|",
            f"| {summary['backend']} | {summary['n']} | {summary['success_iou30']:.2%} | "
            f"{summary['success_iou50']:.2%} | {summary['success_iou75']:.2%} |", "",
            f"not grounded: {summary['not_grounded']}; box centre to the label's: "
            f"{summary['centre_error_px_mean']:.1f} px mean, {summary['centre_error_px_p95']:.1f} "
            f"px p95; the labelled boxes' shorter side: "
            f"{summary['label_short_side_px_median']:.1f} px (median)", "",
            "| acupoint | n | success at IoU 0.5 (seed 0) |", "|---|---|---|"]
    rows += [f"| {code} | {v['n']} | {v['success']:.2%} |"
             for code, v in summary["per_acupoint_iou50"].items()]
    n = summary["seeds"]
    rows += ["", f"over {n} seed{'s' * (n > 1)} (mean ± std, worst): success at IoU 0.5 "
             f"{spread_text(summary, 'success_iou50', '', 3)}, at IoU 0.75 "
             f"{spread_text(summary, 'success_iou75', '', 3)}; box centre to the label's "
             f"{spread_text(summary, 'centre_error_px_mean', 'px', 1)}"]
    return "\n".join(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tuina eval grounding`` options."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", default=None, help="dataset folder (annotations.json)")
    source.add_argument("--sim", type=int, default=0, metavar="N",
                        help="render N labelled images of the sim world instead")
    parser.add_argument("--backend", choices=("atlas", "vlm"), default="atlas")
    parser.add_argument("--model-path", default=None, help="vlm: local checkpoint folder")
    parser.add_argument("--save", default=None, help="--sim: also write the images as a dataset")
    parser.add_argument("--seeds", type=int, default=3,
                        help="--sim: seeds 0..N-1, each its own images, placements and noise "
                        "(default 3, not 5: ~50 s a seed for 40 images on two cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: Any) -> int:
    """``tuina eval grounding``."""
    from tuina.vlm import ModelFolderError

    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    try:
        if args.backend == "vlm" and not args.model_path:
            raise ModelFolderError("--backend vlm needs --model-path DIR (a local checkpoint "
                                   "folder)")
        model = vlm_predictor(args.model_path, log) if args.backend == "vlm" else None
        runs = []
        for seed in range(args.seeds if args.sim else 1):
            if args.sim:
                samples = render_sim(args.sim, seed, log)
                if args.save and seed == 0:
                    write_dataset(samples, Path(args.save))
                    log(f"wrote the rendered set of seed 0 to {args.save}")
            else:
                samples = read_dataset(Path(args.dataset))
            predict = model or atlas_predictor(seed)
            runs.append({"seed": seed, **evaluate(samples, predict)})
        summary = {"backend": args.backend, "seeds": len(runs), **runs[0],
                   **over_seeds(runs, SPREAD), "per_seed": runs}
    except (DatasetError, ModelFolderError, OSError) as err:
        print(f"tuina eval grounding: error: {err}", file=sys.stderr)
        return 2
    print(jsontext.dumps(summary) if args.json else table(summary))
    return 0
