"""The realsense node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from tuina.config import Param

PARAMS = [
    Param("SERIAL", "str", "", "-", "serial number of the camera to open; empty: the only "
          "one connected"),
    Param("PLAYBACK_FILE", "path", "", "-", "a .db3 (or older .bag) recording to play instead "
          "of a live camera"),
    Param("PACE", "choice", "recorded", "-", "playback: send frames at the recorded pace, or "
          "as fast as they are read", choices=("recorded", "fast")),
    Param("WIDTH", "int", 640, "px", "live: stream width", low=160, high=1920),
    Param("HEIGHT", "int", 480, "px", "live: stream height", low=120, high=1080),
    Param("FPS", "int", 30, "Hz", "live: frame rate", low=5, high=90),
    Param("ALIGN_DEPTH", "bool", True, "-", "re-project depth onto the colour camera "
          "(rs.align), so one pixel is the same point in both"),
    Param("EXTRINSICS_FILE", "path", "", "-", "JSON with base_T_camera (4x4 row-major) from "
          "`tuina calibrate`; required: without it no position is in the robot's frame"),
    Param("TIMEOUT_MS", "int", 5000, "ms", "live: a camera silent this long is an error",
          low=100),
]
