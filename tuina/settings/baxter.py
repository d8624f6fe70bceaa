"""The baxter node's env keys, declared once: read by the node and by every tool that
builds its configuration."""

from __future__ import annotations

from tuina.config import RIG_PARAM, Param
from tuina.supervision import SUPERVISOR_PARAMS

PARAMS = [
    RIG_PARAM,
    Param("ROSBRIDGE_HOST", "str", "baxter.local", "-", "the rosbridge server on the robot's "
          "ROS master (roslaunch rosbridge_server rosbridge_websocket.launch)"),
    Param("ROSBRIDGE_PORT", "int", 9090, "-", "rosbridge websocket port", low=1, high=65535),
    Param("SIDE", "choice", "left", "-", "which arm (the left one's model is built in)",
          choices=("left",)),
    Param("CONNECT_TIMEOUT_S", "float", 2.0, "s", "give up connecting after this", low=0.1),
    Param("ENABLE", "bool", True, "-", "enable the robot at start (/robot/set_super_enable)"),
    Param("SPEED_RATIO", "float", 0.3, "-", "the arm's own joint speed limit, as a share of "
          "its maximum (/robot/limb/<side>/set_speed_ratio)", low=0.01, high=1.0),
    Param("COMMAND_RATE_HZ", "float", 100.0, "Hz", "velocity commands per second (the arm "
          "stops itself after 0.2 s without one); joint states are looked for STATE_POLLS "
          "times as often", low=20.0, high=1000.0),
    Param("STATE_TIMEOUT_S", "float", 0.5, "s", "no joint state for this long: the link is "
          "lost", low=0.05),
    Param("MAX_JOINT_SPEED", "float", 1.0, "rad/s", "a command faster than this on any joint "
          "is refused", low=0.01, high=4.0),
    *SUPERVISOR_PARAMS,
    Param("WORKSPACE_MIN", "floats", [0.2, -0.4, -0.3], "m", "workspace box (base): the "
          "table in front of the arm", length=3),
    Param("WORKSPACE_MAX", "floats", [1.0, 1.1, 0.5], "m", "workspace box (base)", length=3),
    Param("TOOL_LENGTH_M", "float", 0.0466, "m", "massage-ball contact point past the gripper "
          "frame", low=0.0),
]
