"""The session node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from tuina.config import RIG_PARAM, Param

PARAMS = [
    RIG_PARAM,
    Param("SESSION", "str", "", "-", "session name; empty: sim-<date>-<time>"),
    Param("RECORDINGS_DIR", "path", "recordings", "-", "where the session folder goes"),
    Param("TIMEOUT_S", "float", 60.0, "s", "event time after which the session is failed",
          low=1),
    Param("MAX_ACUPOINT_ERROR_MM", "float", 10.0, "mm", "ok bound", low=0),
    Param("MAX_NORMAL_ERROR_DEG", "float", 10.0, "deg", "ok bound", low=0),
    Param("MAX_FORCE_RMS_ERROR_N", "float", 1.5, "N", "ok bound", low=0),
    Param("FORCE_CAP_N", "float", 15.0, "N", "ok bound on the largest contact force", low=0),
    Param("RELEASE_WAIT_S", "float", 5.0, "s", "after an error, the longest wait (event time) "
          "for the robot to report it released contact before the session ends", low=0.1),
    Param("REPLAN_WAIT_S", "float", 15.0, "s", "after an abort, the longest wait (event time) "
          "for a new target before the session ends", low=0.5),
]
