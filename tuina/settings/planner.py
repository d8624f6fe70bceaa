"""The planner node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from tuina.config import RIG_PARAM, Param
from tuina.operators.arms import ARMS

PARAMS = [
    RIG_PARAM,
    Param("STANDOFF_M", "float", 0.04, "m", "approach point above the surface", low=0.005),
    Param("CLEARANCE_M", "float", 0.10, "m", "extra height on the way in and out", low=0.0),
    Param("MAX_SPEED", "float", 0.12, "m/s", "tool speed limit", low=0.001, high=0.5),
    Param("MAX_ACCEL", "float", 0.3, "m/s^2", "tool acceleration limit", low=0.001, high=5),
    Param("MAX_JERK", "float", 2.0, "m/s^3", "tool jerk limit", low=0.001, high=50),
    Param("PRESS_S", "float", 3.0, "s", "time pressing at the target force", low=0.0),
    Param("STROKE_SPEED", "float", 0.02, "m/s", "speed along the stroke", low=0.001, high=0.1),
    Param("DT", "float", 0.02, "s", "trajectory sample period", low=0.001, high=0.1),
    Param("TOOL_LENGTH_M", "float", 0.0466, "m",
          "massage-ball contact point past the arm's tool mount (franky's end-effector "
          "frame on an FR3, the gripper endpoint on a Baxter)", low=0.0),
    Param("ROBOT", "choice", "fr3", "-", "kinematic model of the arm", choices=ARMS),
    Param("WORKSPACE_MIN", "floats", [0.15, -0.75, 0.0], "m",
          "workspace box (base); a plan leaving it is refused (as the robot node's)", length=3),
    Param("WORKSPACE_MAX", "floats", [0.85, 0.75, 0.8], "m", "workspace box (base)", length=3),
    Param("MAX_TILT_DEG", "float", 30.0, "deg", "the ball presses the same way from this far "
          "off the surface normal (beyond it the stalk and hand near the skin): the tool "
          "orientations searched for a pose the arm reaches (0: straight along the normal "
          "only)", low=0.0, high=45.0),
    Param("BALL_RADIUS_M", "float", 0.02, "m", "massage ball radius (a tilted ball touches "
          "the target off its axis)", low=0.001, high=0.1),
    Param("ARM_CLEARANCE_M", "float", 0.07, "m", "the links keep this far from every point "
          "the camera sees (body, table) along the plan", low=0.0, high=0.3),
    Param("HAND_CLEARANCE_M", "float", 0.045, "m", "the hand keeps this far from every seen "
          "point", low=0.0, high=0.3),
    Param("TOOL_CLEARANCE_M", "float", 0.025, "m", "the tool (flange to ball) keeps this far "
          "from every seen point outside the contact zone", low=0.0, high=0.1),
    Param("CONTACT_ZONE_M", "float", 0.05, "m", "seen points this near the target are the "
          "contact itself, not obstacles", low=0.0, high=0.2),
    Param("DEPTH_STRIDE", "int", 4, "px", "every n-th depth pixel is an obstacle point",
          low=1, high=16),
    Param("ARM_MASK_M", "float", 0.15, "m", "seen points this near the arm's links or hand "
          "where it plans from are the arm itself (its shells stand off the joint polyline)",
          low=0.0, high=0.5),
]
