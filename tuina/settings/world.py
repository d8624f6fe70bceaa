"""The world node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tuina.config import RIG_PARAM, Param, graph_env, load
from tuina.operators.motion import JERK_S, KINDS, TRIGGERS, BodyMotionScript
from tuina.operators.phantom import POSTURES
from tuina.sim.world import BODIES, FAULTS, ROBOTS, WRENCH_SENSORS, WorldConfig

_SCENE = WorldConfig()  # the default scene: its geometry is declared there once


PARAMS = [
    RIG_PARAM,
    Param("ROBOT", "choice", "fr3", "-", "the simulated arm: fr3 (franky connects to it) or "
          "baxter_left (rosbridge, as on a real Baxter)", choices=ROBOTS),
    Param("FRANKA_HOSTNAME", "str", "127.0.0.1", "-", "loopback address the FR3 server binds"),
    Param("ROSBRIDGE_HOST", "str", "127.0.0.1", "-", "address the Baxter's rosbridge binds"),
    Param("ROSBRIDGE_PORT", "int", 9090, "-", "the Baxter's rosbridge websocket port",
          low=1, high=65535),
    Param("FPS", "float", 15.0, "Hz", "camera frame rate", low=1, high=60),
    Param("RGB_EVERY", "int", 1, "frames", "render RGB on every n-th frame only (depth is "
          "rendered on every frame; RGB, read from the same raster, adds ~7 ms to a 640x480 "
          "frame on a CPU)", low=1, high=30),
    Param("WIDTH", "int", _SCENE.width, "px", "image width", low=64, high=1920),
    Param("HEIGHT", "int", _SCENE.height, "px", "image height", low=48, high=1080),
    Param("CAMERA_POSITION", "floats", list(_SCENE.camera_position), "m", "camera position (base)",
          length=3),
    Param("CAMERA_TARGET", "floats", list(_SCENE.camera_target), "m", "point the camera looks at",
          length=3),
    Param("CAMERA_UP", "floats", list(_SCENE.camera_up), "-", "direction that is up in the image",
          length=3),
    Param("CAMERA_MOUNT_ERROR", "floats", list(_SCENE.camera_mount_error), "mm, deg",
          "true mount minus drawing (camera frame xyz mm, xyz Euler deg); camera_info "
          "reports the drawing", length=6),
    Param("INTRINSICS_ERROR", "floats", list(_SCENE.intrinsics_error), "%, px",
          "camera_info's intrinsics minus the rendered camera's: fx %, fy %, cx px, cy px "
          "(a factory calibration's error)", length=4),
    Param("CALIBRATION_MARKER", "bool", False, "-", "mount the green calibration ball"),
    Param("MARKER_MOUNT_ERROR_MM", "floats", list(_SCENE.marker_mount_error_mm), "mm",
          "where the calibration ball really sits minus its nominal offset (EE axes)",
          length=3),
    Param("TABLE_POSITION", "floats", list(_SCENE.table_position), "m",
          "table centre x, y and top z (base frame)", length=3),
    Param("BODY", "choice", _SCENE.body, "-", "who lies on the table: a person (an anny body "
          "drawn by PERSON_SEED, its acupoints labelled on its own bones and skin) or the "
          "capsule phantom (a fast world for unit tests)", choices=BODIES),
    Param("PERSON_SEED", "int", _SCENE.person_seed, "-", "draws the person (height, weight, "
          "muscle, gender, age, proportions) when BODY is person", low=0),
    Param("BODY_POSTURE", "choice", _SCENE.posture, "-", "how the person lies: supine (face "
          "up) or prone (face down)", choices=POSTURES),
    Param("BODY_POSITION", "floats", list(_SCENE.body_position), "m", "phantom pelvis on the table",
          length=3),
    Param("BODY_YAW_DEG", "float", _SCENE.body_yaw_deg, "deg", "phantom heading about z"),
    Param("BODY_OFFSET_SEED", "int", _SCENE.body_offset_seed, "-", "draws where the phantom "
          "really lies: BODY_POSITION/BODY_YAW_DEG moved by up to BODY_OFFSET_MM in x and y and "
          "BODY_OFFSET_DEG in heading"),
    Param("BODY_OFFSET_MM", "float", _SCENE.body_offset_mm, "mm", "largest x/y offset of the "
          "phantom from BODY_POSITION (0 with BODY_OFFSET_DEG 0: exactly there)", low=0,
          high=200),
    Param("BODY_OFFSET_DEG", "float", _SCENE.body_offset_deg, "deg", "largest heading offset "
          "from BODY_YAW_DEG", low=0, high=45),
    Param("BODY_MOTION", "choice", "none", "-", "scripted body motion: shift (smooth), "
          f"drift (constant velocity, goes on), jerk (within {JERK_S} s)", choices=KINDS),
    Param("BODY_MOTION_TRIGGER", "choice", "time", "-",
          "BODY_MOTION_START_S counts from the start (time) or the first tool contact",
          choices=TRIGGERS),
    Param("BODY_MOTION_START_S", "float", 10.0, "s", "when the motion starts", low=0),
    Param("BODY_MOTION_DURATION_S", "float", 2.0, "s",
          "duration of a shift; a drift moves by the motion in this time", low=0.001),
    Param("BODY_MOTION_TRANSLATION_MM", "floats", [10.0, 0.0, 0.0], "mm",
          "translation of the motion (body frame)", length=3),
    Param("BODY_MOTION_ROTATION_DEG", "floats", [0.0, 0.0, 0.0], "deg",
          "rotation of the motion, xyz Euler (body frame)", length=3),
    Param("CLOSE_DELAY_S", "float", 0.5, "s", "keep physics running after the session ends",
          low=0),
    Param("FAULT", "choice", "none", "-", "fault drill, FAULT_AFTER_CONTACT_S after the first "
          "contact: the arm's wrench NaN, zero, a +20 N spike for 10 ms or a +5 N bias step; "
          "the camera frozen (one frame repeated) or its depth all invalid; the arm's link "
          "dropped (tuina eval safety)", choices=FAULTS),
    Param("FAULT_AFTER_CONTACT_S", "float", 1.5, "s", "when the drill's fault begins",
          low=0.0),
    Param("WRENCH_SENSOR", "choice", _SCENE.wrench_sensor, "-", "the arm's wrench as its "
          "estimate gives it (arm: bias, drift, noise, lag, and the FR3's zero near "
          "singularities; docs/simulation.md) or the true contact wrench (ideal)",
          choices=WRENCH_SENSORS),
    Param("WRENCH_SEED", "int", _SCENE.wrench_seed, "-", "seed of the wrench sensor's bias, "
          "drift and noise"),
    Param("TRUTH_LOG", "str", "", "-", "write the true contact force and end-effector track "
          "(500 Hz) to this .npz when the world closes; empty: none"),
    Param("ROBOT_LINK_DROP_S", "float", 0.0, "s", "fault drill: at this sim time the arm's "
          "network link goes silent (no states, no commands) while physics goes on; 0: never",
          low=0),
]


def world_config(cfg: dict[str, Any]) -> WorldConfig:
    """The world described by a validated env: block."""
    motion = BodyMotionScript(
        cfg["BODY_MOTION"], cfg["BODY_MOTION_START_S"], cfg["BODY_MOTION_DURATION_S"],
        tuple(np.multiply(cfg["BODY_MOTION_TRANSLATION_MM"], 1e-3)),
        tuple(cfg["BODY_MOTION_ROTATION_DEG"]), cfg["BODY_MOTION_TRIGGER"])
    fr3 = cfg["ROBOT"] == "fr3"
    return WorldConfig(
        robot=cfg["ROBOT"], hostname=cfg["FRANKA_HOSTNAME"] if fr3 else cfg["ROSBRIDGE_HOST"],
        rosbridge_port=cfg["ROSBRIDGE_PORT"], table_position=tuple(cfg["TABLE_POSITION"]),
        body=cfg["BODY"], person_seed=cfg["PERSON_SEED"], posture=cfg["BODY_POSTURE"],
        body_position=tuple(cfg["BODY_POSITION"]),
        body_yaw_deg=cfg["BODY_YAW_DEG"], body_offset_seed=cfg["BODY_OFFSET_SEED"],
        body_offset_mm=cfg["BODY_OFFSET_MM"], body_offset_deg=cfg["BODY_OFFSET_DEG"],
        camera_position=tuple(cfg["CAMERA_POSITION"]),
        camera_target=tuple(cfg["CAMERA_TARGET"]), camera_up=tuple(cfg["CAMERA_UP"]),
        camera_mount_error=tuple(cfg["CAMERA_MOUNT_ERROR"]),
        calibration_marker=cfg["CALIBRATION_MARKER"],
        intrinsics_error=tuple(cfg["INTRINSICS_ERROR"]),
        marker_mount_error_mm=tuple(cfg["MARKER_MOUNT_ERROR_MM"]),
        width=cfg["WIDTH"], height=cfg["HEIGHT"], motion=motion,
        robot_link_drop_s=cfg["ROBOT_LINK_DROP_S"], fault=cfg["FAULT"],
        fault_after_contact_s=cfg["FAULT_AFTER_CONTACT_S"], truth_log=cfg["TRUTH_LOG"],
        wrench_sensor=cfg["WRENCH_SENSOR"], wrench_seed=cfg["WRENCH_SEED"])


def world_config_from_env(graph: Path, env: Mapping[str, Any] | None) -> WorldConfig:
    """The world the graph file ``graph``'s ``env:`` block for this node describes
    (validated, its paths relative to the graph's folder)."""
    return world_config(load("world", PARAMS, graph_env(graph, env)))
