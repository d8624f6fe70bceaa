"""The robot node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from tuina.config import RIG_PARAM, Param
from tuina.runtime import (
    PRIORITY_PARAMS,
)
from tuina.supervision import SUPERVISOR_PARAMS

PARAMS = [
    RIG_PARAM,
    Param("FRANKA_IP", "str", "172.16.0.2", "-", "robot (or franky-sim) address"),
    Param("CONNECT_TIMEOUT_S", "float", 2.0, "s", "give up connecting after this", low=0.1),
    Param("TOOL_LENGTH_M", "float", 0.0466, "m",
          "massage-ball contact point past franky's end-effector frame", low=0.0),
    Param("STIFFNESS_N_PER_M", "float", 1500.0, "N/m", "Cartesian impedance, translation",
          low=50, high=3000),
    Param("ROT_STIFFNESS_NM_PER_RAD", "float", 60.0, "N m/rad", "Cartesian impedance, rotation",
          low=5, high=300),
    *SUPERVISOR_PARAMS,
    Param("REFLEX_MARGIN", "float", 1.2, "-", "the arm's own 1 kHz collision reflex stops it "
          "at FORCE_CAP_N times this (franky set_collision_behavior; above the cap, so the "
          "release acts first)", low=1.0, high=3.0),
    Param("WORKSPACE_MIN", "floats", [0.15, -0.75, 0.0], "m", "workspace box (base)",
          length=3),
    Param("WORKSPACE_MAX", "floats", [0.85, 0.75, 0.8], "m", "workspace box (base)",
          length=3),
    Param("MAX_SPEED", "float", 0.15, "m/s", "reference speed limit", low=0.001, high=1.0),
    Param("CONNECTION_TIMEOUT_S", "float", 0.5, "s",
          "the robot's clock standing still this long (wall time) means the connection is lost",
          low=0.05),
    Param("REFERENCE_LEAD_S", "float", 0.12, "s",
          "a moving reference is set this far ahead along its feed-forward velocity: the "
          "impedance's lag behind a ramp (0.074 s at 2500 N/m, 0.35 s at 800 N/m in "
          "franky-sim; 0: off)", low=0, high=0.5),
    Param("STATE_RATE_HZ", "float", 100.0, "Hz", "robot states published on this node's own "
          "absolute schedule (steadier than a dora timer, whose ticks pass through the "
          "daemon)", low=1, high=1000),
    Param("REALTIME", "bool", False, "-", "enforce a realtime kernel (real robots: true)"),
    *PRIORITY_PARAMS,
]
