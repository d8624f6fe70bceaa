"""Vision-language grounding answers: the box formats in use, read back to camera pixels.

- Qwen-VL (HMR-1's fine-tune): ``<ref>Zusanli</ref><box>(x1,y1),(x2,y2)</box>``, corners
  normalised to [0, 1000) of the image;
- Qwen2-VL: ``<|object_ref_start|>Zusanli<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)
  <|box_end|>``, also on [0, 1000);
- Qwen2.5-VL: JSON ``[{"bbox_2d": [x1, y1, x2, y2], "label": "Zusanli"}]`` (often in a
  fenced block), in absolute pixels of the resized image the model saw.

Pure functions: no model, no I/O. ``choose_box`` decides which box, if any, answers the
question; whatever it cannot use becomes a reason, and the robot does not move on it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from tuina.operators.instructions import parse_instruction
from tuina.operators.phantom import Acupoint

NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
CORNERS = rf"\({NUMBER},{NUMBER}\)\s*,?\s*\({NUMBER},{NUMBER}\)"
QWEN_VL_BOX = re.compile(rf"<box>\s*{CORNERS}\s*</box>")
QWEN_VL_REF = re.compile(r"<ref>(.*?)</ref>", re.S)
QWEN2_VL_BOX = re.compile(rf"<\|box_start\|>\s*{CORNERS}\s*<\|box_end\|>")
QWEN2_VL_REF = re.compile(r"<\|object_ref_start\|>(.*?)<\|object_ref_end\|>", re.S)
NORMALISED = 1000.0  # Qwen-VL and Qwen2-VL corners: [0, 1000) of width and height


@dataclass(frozen=True)
class AnswerBox:
    """One box read from an answer, in camera-image pixels, with the words tied to it."""

    label: str
    box: tuple[float, float, float, float]  # x1, y1, x2, y2


@dataclass(frozen=True)
class Grounding:
    """What an answer grounds: a box (None: not grounded) and, if none, why."""

    box: AnswerBox | None
    reason: str = ""
    read: list[AnswerBox] = field(default_factory=list)  # every box found in the answer


def _tagged(answer: str, box_re: re.Pattern, ref_re: re.Pattern, scale_x: float,
            scale_y: float) -> list[AnswerBox]:
    """Boxes of a tagged answer; each takes the label of the nearest reference before it."""
    refs = [(m.end(), m.group(1).strip()) for m in ref_re.finditer(answer)]
    out = []
    for m in box_re.finditer(answer):
        label = next((text for end, text in reversed(refs) if end <= m.start()), "")
        x1, y1, x2, y2 = (float(v) for v in m.groups())
        out.append(AnswerBox(label, (x1 * scale_x, y1 * scale_y, x2 * scale_x, y2 * scale_y)))
    return out


def _json_items(answer: str) -> list[dict]:
    """The JSON objects of an answer: a list, one object, or either inside a fenced block."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", answer, re.S)
    text = fenced.group(1) if fenced else answer
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        return []
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return []
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, dict)]


def read_boxes(answer: str, image_wh: tuple[int, int],
               input_wh: tuple[int, int] | None = None) -> list[AnswerBox]:
    """Every box in ``answer``, in pixels of the camera image (width, height).

    ``input_wh``: the size of the resized image the model saw, for Qwen2.5-VL's absolute
    ``bbox_2d`` (default: the camera image itself).
    """
    w, h = image_wh
    boxes = _tagged(answer, QWEN_VL_BOX, QWEN_VL_REF, w / NORMALISED, h / NORMALISED)
    boxes += _tagged(answer, QWEN2_VL_BOX, QWEN2_VL_REF, w / NORMALISED, h / NORMALISED)
    if boxes:
        return boxes
    in_w, in_h = input_wh or image_wh
    for item in _json_items(answer):
        bbox = item.get("bbox_2d")
        if (isinstance(bbox, list) and len(bbox) == 4
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)):
            x1, y1, x2, y2 = (float(v) for v in bbox)
            boxes.append(AnswerBox(str(item.get("label", "")).strip(),
                                   (x1 * w / in_w, y1 * h / in_h, x2 * w / in_w, y2 * h / in_h)))
    return boxes


def _in_image(box: AnswerBox, w: int, h: int) -> AnswerBox | None:
    """Corners in order and inside the image; None when nothing of it is in the image."""
    x1, y1, x2, y2 = box.box
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    x1, x2 = max(x1, 0.0), min(x2, float(w))
    y1, y2 = max(y1, 0.0), min(y2, float(h))
    if x2 - x1 < 1.0 or y2 - y1 < 1.0:
        return None
    return AnswerBox(box.label, (x1, y1, x2, y2))


def choose_box(boxes: list[AnswerBox], wanted: Acupoint, image_wh: tuple[int, int]
               ) -> Grounding:
    """The one box that answers "where is ``wanted``", or why there is none.

    Corners given the wrong way round are put in order and a box reaching past the image is
    cut to it; a box wholly outside, a label naming another acupoint, or several boxes for
    the point leave it not grounded.
    """
    if not boxes:
        return Grounding(None, "no box in the answer")
    w, h = image_wh
    usable, others, outside = [], [], 0
    for box in boxes:
        inside = _in_image(box, w, h)
        if inside is None:
            outside += 1
            continue
        named = parse_instruction(box.label, require_acupoint=False).acupoint if box.label \
            else None
        if named is not None and named.code != wanted.code:
            others.append(named.code)
        else:
            usable.append(inside)
    if len(usable) == 1:
        return Grounding(usable[0], "", boxes)
    if len(usable) > 1:
        return Grounding(None, f"{len(usable)} boxes for {wanted.code}; expected one", boxes)
    if others:
        return Grounding(None, f"the answer grounds {', '.join(others)}, not {wanted.code}",
                         boxes)
    return Grounding(None, f"{outside} box(es) outside the {w}x{h} image", boxes)


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
