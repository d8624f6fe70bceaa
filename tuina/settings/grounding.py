"""The grounding node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from tuina.config import RIG_PARAM, Param
from tuina.runtime import OPEN3D_PARAMS
from tuina.vlm import DEFAULT_PROMPT

PARAMS = [
    RIG_PARAM,
    Param("BACKEND", "choice", "atlas", "-", "atlas: fit the phantom model to depth; vlm: "
          "ask a vision-language model (MODEL_PATH) about the RGB image",
          choices=("atlas", "vlm")),
    Param("BODY_MODEL", "choice", "phantom", "-", "atlas: the body fitted to depth: the "
          "capsule phantom (a rigid template: the phantom world's own body) or anny (a "
          "parametric human body: shape, arms and placement fitted, the points placed on it "
          "by the standard's rules; ~10 s a fit here)", choices=("phantom", "anny")),
    Param("MAX_POINT_SIGMA_MM", "float", 3.0, "mm", "atlas with anny: a point the fit places "
          "less surely (1 sigma) is refused", low=0.1, high=20.0),
    Param("MODEL_PATH", "path", "", "-", "vlm: local checkpoint folder (Qwen-VL, Qwen2-VL or "
          "Qwen2.5-VL); nothing is downloaded"),
    Param("PROMPT", "str", DEFAULT_PROMPT, "-",
          "vlm: the question; {pinyin} and {code} name the acupoint"),
    Param("DEVICE", "choice", "auto", "-", "vlm: where the model runs (auto: CUDA if present)",
          choices=("auto", "cpu", "cuda")),
    Param("MAX_NEW_TOKENS", "int", 48, "-", "vlm: longest answer", low=8, high=1024),
    Param("MAX_ANSWER_AGE_S", "float", 2.0, "s", "vlm: an answer about a frame this much "
          "older than the newest (camera time) is dropped and the question asked again",
          low=0.05),
    Param("MAX_STALE_ANSWERS", "int", 3, "-", "vlm: stale answers in a row before the "
          "grounding gives up with an error", low=1),
    Param("FORCE_LIGHT_N", "float", 4.0, "N", "target force for 'light'", low=0.5, high=15),
    Param("FORCE_MODERATE_N", "float", 6.0, "N", "target force for 'moderate'", low=0.5,
          high=15),
    Param("FORCE_FIRM_N", "float", 9.0, "N", "target force for 'firm'", low=0.5, high=15),
    Param("BODY_POSITION", "floats", [0.55, 0.2, 0.0], "m",
          "where the phantom is expected (base)", length=3),
    Param("BODY_YAW_DEG", "float", 90.0, "deg", "expected phantom heading"),
    Param("BODY_POSTURE", "choice", "supine", "-", "how the person lies: a point reached "
          "in the other posture (the back's prone, the front's supine) is refused",
          choices=("supine", "prone")),
    Param("UNNAMED_SIDE", "choice", "facing", "-", "a bilateral point whose side the "
          "instruction does not name: the side that faces the arm's base (on the expected "
          "body pose), or always the left or the right", choices=("facing", "left", "right")),
    Param("STROKE_LENGTH_M", "float", 0.05, "m",
          "path length of a 'stroke' instruction with none drawn",
          low=0.0, high=0.3),
    Param("ROI_MIN", "floats", [0.1, -0.9, -0.05], "m", "region of the body cloud (base)",
          length=3),
    Param("ROI_MAX", "floats", [1.0, 0.9, 0.3], "m", "region of the body cloud (base)",
          length=3),
    Param("BALL_RADIUS_M", "float", 0.02, "m", "atlas: massage ball radius; a point where "
          "the body model reaches into the ball is refused", low=0.0, high=0.1),
    Param("BALL_CLEARANCE_M", "float", 0.003, "m", "atlas: how far the body model may reach "
          "into the ball", low=0.0, high=0.02),
    Param("APPROACH_CLEARANCE_M", "float", 0.03, "m", "atlas: the tool's way in along the "
          "normal must pass this far from the body model (0: not checked)", low=0.0,
          high=0.2),
    Param("APPROACH_LENGTH_M", "float", 0.15, "m", "atlas: how far out that way is checked",
          low=0.0, high=0.5),
    Param("SEED", "int", 0, "-", "seed of the table RANSAC"),
    Param("REGROUND_DELAY_S", "float", 1.0, "s",
          "after a re-grounding request, wait this long for the body to settle", low=0.0),
    *OPEN3D_PARAMS,
]


def pressure_forces(cfg: dict) -> dict[str, float]:
    """The contact force (N) each pressure word of an instruction asks for."""
    return {"light": cfg["FORCE_LIGHT_N"], "moderate": cfg["FORCE_MODERATE_N"],
            "firm": cfg["FORCE_FIRM_N"]}
