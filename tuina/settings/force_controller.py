"""The force-controller node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from typing import Any

from tuina.config import RIG_PARAM, Param
from tuina.operators.arms import ARMS
from tuina.operators.force_control import ForceConfig
from tuina.runtime import PRIORITY_PARAMS

PARAMS = [
    RIG_PARAM,
    Param("KP", "float", 0.01, "(m/s)/N", "proportional gain of the normal force loop", low=0),
    Param("KI", "float", 0.0, "(m/s)/(N s)", "integral gain (the admittance itself "
          "integrates the force error; an integral on top makes the force drift)", low=0),
    Param("KD", "float", 0.0002, "(m/s)/(N/s)", "derivative gain", low=0),
    Param("DERIVATIVE_TAU_S", "float", 0.05, "s", "derivative low-pass time constant", low=0),
    Param("INTEGRAL_LIMIT", "float", 5.0, "N s", "anti-windup clamp", low=0),
    Param("MAX_NORMAL_SPEED", "float", 0.02, "m/s", "force-loop speed limit", low=0.001),
    Param("SEARCH_SPEED", "float", 0.01, "m/s", "speed towards the surface before contact",
          low=0.001, high=0.05),
    Param("CONTACT_THRESHOLD_N", "float", 1.0, "N", "force that means contact", low=0.1),
    Param("MAX_DEPTH_M", "float", 0.03, "m", "deepest reference past the planned surface",
          low=0.0),
    Param("FORCE_CAP_N", "float", 15.0, "N", "hard cap: above it the controller retreats",
          low=1.0, high=40.0),
    Param("COMPENSATION_GAIN", "float", 2.0, "1/s",
          "PBVS compensation: integral gain on the tangential tool tracking error", low=0,
          high=20),
    Param("MAX_COMPENSATION_M", "float", 0.005, "m",
          "clamp of that compensation (anti-windup: skin friction holds the ball)", low=0,
          high=0.05),
    Param("MAX_FOLLOW_SPEED", "float", ForceConfig().max_follow_speed, "m/s",
          "rate limit of the trajectory following the body", low=0.001, high=0.2),
    Param("MAX_FOLLOW_RATE_DEG_S", "float", 15.0, "deg/s",
          "rotation rate limit of the trajectory following the body", low=0.1, high=90),
    Param("FOLLOW_LEAD_S", "float", 0.12, "s",
          "age of a body motion when it arrives (frame time to here): the motion is "
          "extrapolated at the tracker's body velocity by this plus the time since", low=0,
          high=0.5),
    Param("MAX_LEAD_S", "float", 0.25, "s", "longest extrapolation of the body motion",
          low=0, high=1.0),
    Param("RETREAT_M", "float", 0.06, "m", "back-off along the normal when a massage aborts",
          low=0.01, high=0.2),
    Param("TRACKER_TIMEOUT_S", "float", 0.5, "s",
          "robot time without body motion, counted from the trajectory's start, that aborts "
          "the massage", low=0.05),
    Param("MAX_FORCE_JUMP_N", "float", 3.0, "N", "a larger change of the force reading "
          "between two robot states in contact is a fault (an error: the robot releases), "
          "named the body's push when the tool was thrown back with it, else a force jump; "
          "a larger fall out of contact is a lost contact (abort); a rise from no contact is "
          "contact", low=0.5),
    *PRIORITY_PARAMS,
    Param("OUTPUT", "choice", "cartesian", "-", "cartesian: pose + twist (franky); "
          "joint_velocity: also joint velocities (a Baxter)",
          choices=("cartesian", "joint_velocity")),
    Param("FORCE_SOURCE", "choice", "wrench", "-", "wrench: the robot's estimate; "
          "joint_torques: (J^T)^+ (tau - g(q)) from the measured joint torques",
          choices=("wrench", "joint_torques")),
    Param("ROBOT", "choice", "fr3", "-", "kinematic model for joint velocities and torques",
          choices=ARMS),
    Param("TOOL_LENGTH_M", "float", 0.0466, "m", "massage-ball contact point past the arm's "
          "tool mount (as the planner's)", low=0.0),
    Param("PBVS_GAIN", "float", 4.0, "1/s", "lambda of v_e = -lambda L_e^-1 e (joint output)",
          low=0.1, high=50),
    Param("MAX_JOINT_SPEED", "float", 1.0, "rad/s", "joint output: the velocities are scaled "
          "down as a whole (direction kept) so that no joint is faster than this or than the "
          "arm model's limit; the robot node refuses a faster command (a rig key)",
          low=0.01, high=4.0),
]


def force_config(cfg: dict[str, Any]) -> ForceConfig:
    """The controller's gains and limits from a validated env: block."""
    return ForceConfig(kp=cfg["KP"], ki=cfg["KI"], kd=cfg["KD"],
                       derivative_tau_s=cfg["DERIVATIVE_TAU_S"],
                       integral_limit=cfg["INTEGRAL_LIMIT"],
                       max_normal_speed=cfg["MAX_NORMAL_SPEED"],
                       search_speed=cfg["SEARCH_SPEED"],
                       contact_threshold_n=cfg["CONTACT_THRESHOLD_N"],
                       max_depth_m=cfg["MAX_DEPTH_M"], force_cap_n=cfg["FORCE_CAP_N"],
                       max_follow_speed=cfg["MAX_FOLLOW_SPEED"],
                       compensation_gain=cfg["COMPENSATION_GAIN"],
                       max_compensation_m=cfg["MAX_COMPENSATION_M"],
                       max_follow_rate_deg=cfg["MAX_FOLLOW_RATE_DEG_S"],
                       retreat_m=cfg["RETREAT_M"], max_force_jump_n=cfg["MAX_FORCE_JUMP_N"])
