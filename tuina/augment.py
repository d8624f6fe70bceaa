"""``tuina augment``: HMR-1's augmentation, new image/QA pairs by random crops and rotations.

Each new image is the source rotated about its centre (the canvas grows to hold all of it)
and then cropped; every labelled box goes through the same transform, and becomes the tight
box of its four transformed corners, cut to the crop. A question whose box keeps less than
half of its area in the crop is left out. The same seed gives the same dataset.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tuina.evaluation.grounding import DatasetError, Question, Sample, read_dataset, write_dataset


def rotation(angle_deg: float, w: int, h: int) -> tuple[np.ndarray, tuple[int, int]]:
    """2x3 affine turning a WxH image by ``angle_deg`` (counter-clockwise) about its centre,
    onto a canvas that holds the whole turned image, and that canvas's size."""
    M = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle_deg, 1.0)
    c, s = abs(M[0, 0]), abs(M[0, 1])
    new_w = int(np.ceil(w * c + h * s - 1e-6))  # 1e-6: cos(90 deg) is not quite 0
    new_h = int(np.ceil(w * s + h * c - 1e-6))
    M[0, 2] += (new_w - w) / 2.0
    M[1, 2] += (new_h - h) / 2.0
    return M, (new_w, new_h)


def transform_box(box: tuple[float, ...], M: np.ndarray) -> tuple[float, float, float, float]:
    """The tight box of a box's four corners under a 2x3 affine."""
    x1, y1, x2, y2 = box
    corners = np.array([[x1, y1, 1.0], [x2, y1, 1.0], [x2, y2, 1.0], [x1, y2, 1.0]])
    moved = corners @ M.T
    return (float(moved[:, 0].min()), float(moved[:, 1].min()),
            float(moved[:, 0].max()), float(moved[:, 1].max()))


def cut_box(box: tuple[float, ...], x0: float, y0: float, w: int, h: int
            ) -> tuple[tuple[float, float, float, float], float]:
    """A box moved into a crop at (x0, y0) of size w x h and cut to it, and the share of
    its area kept."""
    bx1, by1, bx2, by2 = box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0
    area = max(bx2 - bx1, 0.0) * max(by2 - by1, 0.0)
    cx1, cy1, cx2, cy2 = max(bx1, 0.0), max(by1, 0.0), min(bx2, float(w)), min(by2, float(h))
    kept = max(cx2 - cx1, 0.0) * max(cy2 - cy1, 0.0)
    return (cx1, cy1, cx2, cy2), (kept / area if area > 0 else 0.0)


def augment_sample(sample: Sample, rng: np.random.Generator, max_rotation_deg: float,
                   min_crop: float) -> Sample:
    """One new sample: the image turned by a random angle, then a random crop of it."""
    h, w = sample.image.shape[:2]
    angle = float(rng.uniform(-max_rotation_deg, max_rotation_deg))
    M, (rw, rh) = rotation(angle, w, h)
    turned = cv2.warpAffine(sample.image, M, (rw, rh), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    scale = float(rng.uniform(min_crop, 1.0))
    cw, ch = max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)
    cw, ch = min(cw, rw), min(ch, rh)
    x0 = int(rng.integers(0, rw - cw + 1))
    y0 = int(rng.integers(0, rh - ch + 1))
    image = np.ascontiguousarray(turned[y0:y0 + ch, x0:x0 + cw])
    questions = []
    for q in sample.questions:
        box, kept = cut_box(transform_box(q.box, M), x0, y0, cw, ch)
        if kept >= 0.5:
            questions.append(Question(q.text, q.acupoint, box))
    return replace(sample, image=image, questions=questions, depth=None, K=None,
                   base_T_camera=None, extra={"angle_deg": angle, "crop": (x0, y0, cw, ch)})


def augment(samples: list[Sample], copies: int, seed: int = 0, max_rotation_deg: float = 30.0,
            min_crop: float = 0.7) -> list[Sample]:
    """``copies`` augmented samples per sample (those left with no question are dropped)."""
    rng = np.random.default_rng(seed)
    out = []
    for sample in samples:
        for _ in range(copies):
            new = augment_sample(sample, rng, max_rotation_deg, min_crop)
            if new.questions:
                out.append(new)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tuina augment`` options."""
    parser.add_argument("dataset", help="MedMassage-format dataset folder")
    parser.add_argument("-o", "--output", required=True, help="folder for the augmented dataset")
    parser.add_argument("--copies", type=int, default=10, help="new images per image (default 10)")
    parser.add_argument("--max-rotation-deg", type=float, default=30.0)
    parser.add_argument("--min-crop", type=float, default=0.7,
                        help="smallest crop side, as a fraction of the image side")
    parser.add_argument("--seed", type=int, default=0)


def main(args: Any) -> int:
    """``tuina augment DIR -o OUT``."""
    try:
        samples = read_dataset(Path(args.dataset))
    except DatasetError as err:
        print(f"tuina augment: error: {err}", file=sys.stderr)
        return 2
    if not 0.1 <= args.min_crop <= 1.0:
        print("tuina augment: error: --min-crop must be within 0.1..1", file=sys.stderr)
        return 2
    new = augment(samples, args.copies, args.seed, args.max_rotation_deg, args.min_crop)
    write_dataset(new, Path(args.output))
    print(f"tuina augment: {len(samples)} images, {sum(len(s.questions) for s in samples)} "
          f"questions -> {len(new)} images, {sum(len(s.questions) for s in new)} questions in "
          f"{args.output}")
    return 0
