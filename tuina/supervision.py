"""What both robot nodes (FR3, Baxter) share around the safety supervisor: its env keys,
the supervisor they describe, and the one line each report becomes."""

from __future__ import annotations

from typing import Any

from tuina.config import Param
from tuina.operators.safety import SafetyConfig
from tuina.operators.supervisor import Report, SupervisorConfig

SUPERVISOR_PARAMS = [
    Param("FORCE_CAP_N", "float", 15.0, "N", "hard contact force cap: over it the arm releases "
          "contact", low=1.0, high=40.0),
    Param("WATCHDOG_S", "float", 0.1, "s", "no command for this long (robot time) while "
          "following: release contact", low=0.01),
    Param("MAX_COMMAND_AGE_S", "float", 0.02, "s", "a command computed from a robot state "
          "older than this (robot time; two state periods) is a fault", low=0.005),
    Param("RELEASE_M", "float", 0.03, "m", "furthest a release moves the tool away from the "
          "body", low=0.005, high=0.1),
    Param("RELEASE_SPEED", "float", 0.04, "m/s", "speed of that release", low=0.005,
          high=0.2),
    Param("RELEASE_FORCE_N", "float", 0.5, "N", "a measured force below this is out of "
          "contact: the release holds there", low=0.05, high=5.0),
    Param("CLOSE_TIMEOUT_S", "float", 5.0, "s", "after the graph ends, the longest the node "
          "goes on releasing before it stops the arm where it is", low=0.5),
]


def supervisor_config(cfg: dict[str, Any], max_speed: float = 0.15,
                      lead_s: float = 0.0, max_lead_m: float = 0.02) -> SupervisorConfig:
    """The supervisor a robot node's validated env (SUPERVISOR_PARAMS and its workspace box)
    describes."""
    safety = SafetyConfig(tuple(cfg["WORKSPACE_MIN"]), tuple(cfg["WORKSPACE_MAX"]),
                          cfg["FORCE_CAP_N"], max_speed, 0.05, cfg["WATCHDOG_S"])
    return SupervisorConfig(safety, cfg["MAX_COMMAND_AGE_S"], cfg["RELEASE_M"],
                            cfg["RELEASE_SPEED"], cfg["RELEASE_FORCE_N"],
                            reference_lead_s=lead_s, max_lead_m=max_lead_m)


def fault_line(report: Report) -> str:
    """The one line a robot node prints and sends for a supervisor report."""
    if report.kind == "released":
        return f"released contact: {report.detail}"
    return f"{report.detail} [{report.fault}]; releasing contact, then holding"
