"""Instruction understanding: which acupoint, how hard, which technique."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np
from tuina.operators.phantom import ATLAS, Acupoint, is_bilateral, right_side

PRESSURE_WORDS: dict[str, tuple[str, ...]] = {
    "light": ("light", "lightly", "gentle", "gently", "soft", "softly", "轻"),
    "moderate": ("moderate", "moderately", "medium", "normal", "适中", "中等"),
    "firm": ("firm", "firmly", "deep", "deeply", "strong", "strongly", "hard", "重"),
}
TECHNIQUE_WORDS: dict[str, tuple[str, ...]] = {
    "press": ("press", "push", "hold", "按", "点"),
    "knead": ("knead", "rub", "揉"),
    "stroke": ("stroke", "slide", "glide", "推", "stroking"),
}


# Named massage paths: (words that name it, the atlas point it starts at, the point whose
# level it ends at). The inner bladder line, 1.5 cun from the spine, from T3 down to L4.
NAMED_STROKES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("bladder line", "bladder meridian", "back-shu line", "back shu line", "膀胱经"),
     "BL13", "BL25"),
)


class InstructionError(ValueError):
    """An instruction that cannot be carried out as asked; the message says why and what
    to ask instead."""


class UnknownAcupoint(InstructionError):
    """The instruction names no acupoint of the atlas."""


MAX_HOLD_S = 300.0  # the longest press or knead one step may ask for
_HOLD = re.compile(r"\bfor\s+(\d+(?:\.\d+)?)\s*(seconds?|secs?|s|minutes?|mins?)\b"
                   r"|(\d+(?:\.\d+)?)\s*(秒|分钟)")


def hold_seconds(text: str) -> float:
    """How long the instruction asks to hold the force at the point ("for 20 s", "for 1
    minute", "20秒"); 0.0 when it does not say (the planner's PRESS_S)."""
    found = _HOLD.search(text.lower())
    if found is None:
        return 0.0
    value, unit = (found.group(1), found.group(2)) if found.group(1) else \
        (found.group(3), found.group(4))
    return float(value) * (60.0 if unit.startswith("m") or unit == "分钟" else 1.0)


@dataclass(frozen=True)
class ParsedInstruction:
    """What an instruction asks for."""

    acupoint: Acupoint | None  # None: a drawn stroke with no named point
    pressure: str  # light | moderate | firm
    technique: str  # press | knead | stroke
    side: str = ""  # left | right as named; "": none named (a bilateral point is the left)
    stroke_length_m: float = 0.0  # a named path's length; 0: the graph's STROKE_LENGTH_M
    hold_s: float = 0.0  # seconds at the force on the point; 0: the planner's PRESS_S


def known_names() -> list[str]:
    """Every name an acupoint can be called by (pinyin, code, Chinese)."""
    return [n for a in ATLAS for n in (a.pinyin, a.code, a.chinese)]


SIDE_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("left", "l", "左"),
    "right": ("right", "r", "右"),
}


def named_side(text: str) -> str:
    """left | right as the instruction names it ("on the right leg", "ST36-R", "右"); "" when
    it names none. A single letter counts only as a code's suffix."""
    low = text.lower()
    suffix = re.search(r"\b[a-z]{2}\d+-([lr])\b", low)
    if suffix:
        return "left" if suffix.group(1) == "l" else "right"
    words = set(re.findall(r"[a-z]+", low))
    for side, synonyms in SIDE_WORDS.items():
        if any((w.isascii() and len(w) > 1 and w in words) or (not w.isascii() and w in text)
               for w in synonyms):
            return side
    return ""


def _find_acupoint(text: str) -> Acupoint | None:
    point = _find_atlas_point(text)
    if point is not None and is_bilateral(point) and named_side(text) == "right":
        return right_side(point)
    return point


def _find_atlas_point(text: str) -> Acupoint | None:
    low = text.lower()
    number = re.search(r"(?:point|number|no\.?|#)\s*(?:number\s*)?(\d+)", low)
    if number:
        for a in ATLAS:
            if a.number == int(number.group(1)):
                return a
        return None
    words = set(re.findall(r"[a-z0-9]+", low))
    for a in ATLAS:
        if a.pinyin.lower() in words or a.code.lower() in words or a.chinese in text:
            return a
    return None


def closest_names(text: str, n: int = 3) -> list[str]:
    """Atlas names closest to any word of ``text``, for the error message."""
    names = known_names()
    by_lower = {x.lower(): x for x in names}
    scored: dict[str, float] = {}
    for word in re.findall(r"\w+", text.lower()):
        for cand in difflib.get_close_matches(word, list(by_lower), n=n, cutoff=0.0):
            score = difflib.SequenceMatcher(None, word, cand).ratio()
            scored[by_lower[cand]] = max(scored.get(by_lower[cand], 0.0), score)
    return [k for k, _ in sorted(scored.items(), key=lambda kv: -kv[1])[:n]]


def _first_word(text: str, table: dict[str, tuple[str, ...]], default: str) -> str:
    low = text.lower()
    words = set(re.findall(r"[a-z]+", low))
    for key, synonyms in table.items():
        for s in synonyms:
            if (s.isascii() and s in words) or (not s.isascii() and s in text):
                return key
    return default


def named_stroke(text: str) -> tuple[Acupoint, float] | None:
    """The start point and length of a named path the instruction asks for ("stroke the
    bladder line"), or None."""
    low = text.lower()
    for words, start, end in NAMED_STROKES:
        if any(w in low or w in text for w in words):
            a = next(p for p in ATLAS if p.code == start)
            b = next(p for p in ATLAS if p.code == end)
            return a, float(np.linalg.norm(b.position - a.position))
    return None


def parse_instruction(text: str, require_acupoint: bool = True) -> ParsedInstruction:
    """Parse "press Zusanli with moderate pressure" (or ST36, 足三里, "point number 1"), or a
    named path ("stroke the bladder line": from BL13 along the line to BL25's level).
    A bilateral point is the left one unless the instruction names the right ("press Zusanli
    on the right leg", "ST36-R", 右), then it is ``right_side`` of it (code ``<code>-R``);
    ``side`` says which side was named, if any (the grounding node picks the side that faces
    the arm when none is).

    Raises UnknownAcupoint with the closest known names when nothing matches, unless
    ``require_acupoint`` is False (the operator drew the path instead).
    """
    path = named_stroke(text)
    hold_s = _checked_hold(text)
    if path is not None:
        start, length = path
        point = right_side(start) if named_side(text) == "right" else start
        return ParsedInstruction(point, _first_word(text, PRESSURE_WORDS, "moderate"),
                                 "stroke", named_side(text), length, _no_stroke_hold(hold_s))
    point = _find_acupoint(text)
    if point is None and require_acupoint:
        near = ", ".join(closest_names(text)) or ", ".join(known_names()[:3])
        raise UnknownAcupoint(f"no known acupoint in {text!r}; closest known names: {near}")
    default_technique = "press" if point is not None else "stroke"
    technique = _first_word(text, TECHNIQUE_WORDS, default_technique)
    return ParsedInstruction(
        acupoint=point,
        pressure=_first_word(text, PRESSURE_WORDS, "moderate"),
        technique=technique,
        side=named_side(text) if point is not None and is_bilateral(point) else "",
        hold_s=_no_stroke_hold(hold_s) if technique == "stroke" else hold_s,
    )


def _checked_hold(text: str) -> float:
    hold_s = hold_seconds(text)
    if hold_s < 0 or hold_s > MAX_HOLD_S or (hold_s == 0 and _HOLD.search(text.lower())):
        raise InstructionError(f"a hold of {hold_s:g} s in {text!r}; ask for more than 0 and "
                               f"at most {MAX_HOLD_S:g} s")
    return hold_s


def _no_stroke_hold(hold_s: float) -> float:
    if hold_s:
        raise InstructionError("a stroke lasts its length at the planner's STROKE_SPEED; a "
                               "duration belongs to a press or a knead")
    return 0.0
