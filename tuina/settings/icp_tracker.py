"""The icp-tracker node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from tuina.config import RIG_PARAM, Param
from tuina.operators.arms import ARMS
from tuina.operators.tracking import (
    TrackerConfig,
)
from tuina.runtime import OPEN3D_PARAMS

PARAMS = [
    RIG_PARAM,
    Param("VOXEL_M", "float", 0.01, "m", "voxel size of the registered clouds", low=0.002),
    Param("MAX_CORRESPONDENCE_M", "float", 0.03, "m", "ICP correspondence distance", low=0.001),
    Param("ITERATIONS", "int", 30, "-", "ICP iterations per frame", low=1, high=200),
    Param("MIN_FITNESS", "float", 0.6, "-",
          "share of a frame's body voxels that must match the reference", low=0, high=1),
    Param("MIN_POINTS", "int", 300, "-", "fewest body voxels for a valid frame", low=10),
    Param("MIN_COVERAGE", "float", 0.5, "-",
          "fewest body voxels of a frame relative to the reference (body out of view)",
          low=0, high=1),
    Param("TRANSLATION_THRESHOLD_M", "float", 0.0005, "m",
          "motion criterion s(t, theta): translation that updates the trajectory", low=0),
    Param("ROTATION_THRESHOLD_DEG", "float", 0.1, "deg",
          "motion criterion s(t, theta): rotation that updates the trajectory", low=0),
    Param("MAX_BODY_SPEED", "float", 0.08, "m/s",
          "faster body motion between frames is a large motion: the track is lost", low=0),
    Param("MAX_BODY_RATE_DEG_S", "float", 20.0, "deg/s",
          "faster body rotation between frames is a large motion", low=0),
    Param("MAX_TOTAL_M", "float", 0.06, "m",
          "motion from the reference beyond which the target is found again", low=0),
    Param("MAX_TOTAL_DEG", "float", 10.0, "deg",
          "rotation from the reference beyond which the target is found again", low=0),
    Param("LOST_AFTER_FRAMES", "int", 15, "-", "consecutive bad frames that lose the track",
          low=1),
    Param("ROI_MIN", "floats", [0.1, -0.9, -0.05], "m", "body region (base)", length=3),
    Param("ROI_MAX", "floats", [1.0, 0.9, 0.3], "m", "body region (base)", length=3),
    Param("TABLE_MARGIN_M", "float", 0.012, "m", "points this close to the table are dropped",
          low=0),
    Param("ROBOT", "choice", "fr3", "-", "arm to mask out of the cloud (none: no arm in view)",
          choices=(*ARMS, "none")),
    Param("ARM_MASK_M", "float", 0.08, "m", "radius around the arm's links, hand and tool "
          "removed from the cloud", low=0),
    Param("TOOL_LENGTH_M", "float", 0.0466, "m",
          "massage-ball contact point past franky's end-effector frame", low=0.0),
    Param("STRIDE", "int", 4, "px", "pixel stride of the depth back-projection", low=1, high=8),
    Param("SEED", "int", 0, "-", "seed of the table plane RANSAC"),
    Param("FROZEN_FRAMES", "int", 2, "-", "identical depth frames in a row after the first "
          "that make the camera frozen (0: never; a noise-free simulated camera)", low=0),
    Param("INVALID_FRAMES", "int", 3, "-", "depth frames in a row with too few valid pixels "
          "that make the depth invalid", low=1),
    Param("MIN_VALID_SHARE", "float", 0.25, "-", "fewest pixels with depth in a valid frame",
          low=0, high=1),
    *OPEN3D_PARAMS,
]


def tracker_config(cfg: dict) -> TrackerConfig:
    """Tracker parameters from a validated env: block."""
    return TrackerConfig(
        voxel_m=cfg["VOXEL_M"], max_correspondence_m=cfg["MAX_CORRESPONDENCE_M"],
        iterations=cfg["ITERATIONS"], min_points=cfg["MIN_POINTS"],
        min_coverage=cfg["MIN_COVERAGE"], min_fitness=cfg["MIN_FITNESS"],
        translation_threshold_m=cfg["TRANSLATION_THRESHOLD_M"],
        rotation_threshold_deg=cfg["ROTATION_THRESHOLD_DEG"],
        max_speed_m_s=cfg["MAX_BODY_SPEED"], max_rate_deg_s=cfg["MAX_BODY_RATE_DEG_S"],
        max_total_m=cfg["MAX_TOTAL_M"], max_total_deg=cfg["MAX_TOTAL_DEG"],
        lost_after_frames=cfg["LOST_AFTER_FRAMES"], table_margin_m=cfg["TABLE_MARGIN_M"])
