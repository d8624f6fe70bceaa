"""The pose-fit node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from tuina.config import RIG_PARAM, Param
from tuina.operators.posefit import NORMAL_RADIUS_M

PARAMS = [
    RIG_PARAM,
    Param("POINT_RADIUS_M", "float", 0.005, "m", "radius of skin the target point is read from",
          low=0.001, high=0.05),
    Param("NORMAL_RADIUS_M", "float", NORMAL_RADIUS_M, "m",
          "radius of skin the normal is fitted on",
          low=0.003, high=0.08),
    Param("STROKE_SPACING_M", "float", 0.005, "m", "arc-length spacing of the stroke path",
          low=0.001, high=0.05),
    Param("TOOL_X_AXIS", "floats", [1.0, 0.0, 0.0], "-",
          "preferred tool x axis (base); the wrist turns least from it", length=3),
    Param("ROI_MIN", "floats", [0.1, -0.9, -0.05], "m", "region of the body cloud (base)",
          length=3),
    Param("ROI_MAX", "floats", [1.0, 0.9, 0.3], "m", "region of the body cloud (base)",
          length=3),
    Param("SEED", "int", 0, "-", "RANSAC seed"),
    Param("MAX_VIEW_DEG", "float", 60.0, "deg", "a surface seen more obliquely than this from "
          "the camera is not trusted from depth", low=10.0, high=89.0),
    Param("MAX_DISAGREE_M", "float", 0.006, "m", "largest distance between the depth fit and "
          "the grounding backend's registered model point", low=0.001),
    Param("MAX_DISAGREE_DEG", "float", 15.0, "deg", "largest angle between the depth normal "
          "and the model's", low=1.0, high=90.0),
    Param("MAX_MODEL_RMSE_M", "float", 0.006, "m", "a registered model fitting the body "
          "cloud worse than this (RMS) is not trusted", low=0.0005),
    Param("BALL_RADIUS_M", "float", 0.02, "m", "massage ball radius: a target where the body "
          "reaches into the ball resting on it (a hollow) is refused", low=0.001, high=0.1),
    Param("BALL_CLEARANCE_M", "float", 0.003, "m", "how far the body cloud may reach into the "
          "ball (depth noise) before the ball is said not to fit", low=0.0, high=0.02),
]
