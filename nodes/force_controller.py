"""force-controller: hybrid motion/force control at the robot state rate.

Inputs: ``robot_state`` (trigger), ``trajectory`` and ``body_motion`` (latest values).
Outputs: ``command`` (tool reference for the robot node), ``events`` (phase changes, done).
"""

from __future__ import annotations

import numpy as np
from tuina.operators.force_control import ForceConfig, HybridForceController

from tuina.config import Param
from tuina.messages import BASE_FRAME, BodyMotion, Command, RobotState, SessionEvent, Trajectory
from tuina.node import Outputs, configure, events, stamp_of

PARAMS = [
    Param("KP", "float", 0.004, "(m/s)/N", "proportional gain of the normal force loop", low=0),
    Param("KI", "float", 0.002, "(m/s)/(N s)", "integral gain", low=0),
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
]


def main() -> None:
    """One command per robot state."""
    cfg = configure("force-controller", PARAMS)
    from dora import Node

    fcfg = ForceConfig(kp=cfg["KP"], ki=cfg["KI"], kd=cfg["KD"],
                       derivative_tau_s=cfg["DERIVATIVE_TAU_S"],
                       integral_limit=cfg["INTEGRAL_LIMIT"],
                       max_normal_speed=cfg["MAX_NORMAL_SPEED"],
                       search_speed=cfg["SEARCH_SPEED"],
                       contact_threshold_n=cfg["CONTACT_THRESHOLD_N"],
                       max_depth_m=cfg["MAX_DEPTH_M"], force_cap_n=cfg["FORCE_CAP_N"])
    node = Node()
    out = Outputs(node)
    traj: Trajectory | None = None
    arrays: tuple | None = None
    start_ns: int | None = None
    controller = HybridForceController(fcfg)
    motion = np.eye(4)
    phase = ""
    for event in events(node):
        stamp = stamp_of(event)
        if event["id"] == "trajectory":
            traj = Trajectory.from_arrow(event["value"])
            arrays = (np.asarray(traj.t_s), np.asarray(traj.positions).reshape(-1, 3),
                      np.asarray(traj.quaternions).reshape(-1, 4), np.asarray(traj.forces_n),
                      np.asarray(traj.normals).reshape(-1, 3), traj.phases)
            start_ns = None
            controller = HybridForceController(fcfg)
        elif event["id"] == "body_motion":
            bm = BodyMotion.from_arrow(event["value"])
            if bm.status == "ok":
                motion = np.eye(4)
                motion[:3, :3] = np.asarray(bm.rotation).reshape(3, 3)
                motion[:3, 3] = bm.translation
        elif event["id"] == "robot_state" and arrays is not None:
            state = RobotState.from_arrow(event["value"])
            if start_ns is None:
                # the trajectory starts at the first state the controller sees for it
                start_ns = max(stamp, traj.start_stamp_ns)
            t = (stamp - start_ns) * 1e-9
            if t < 0:
                continue
            ref = controller.step(t, *arrays[:3], arrays[3], arrays[4], arrays[5],
                                  np.asarray(state.tool_position), np.asarray(state.wrench),
                                  motion)
            cmd = Command(ref.position.tolist(), ref.quaternion.tolist(), [0.0] * 6, ref.mode,
                          ref.phase, ref.force_target_n, ref.force_measured_n)
            out.send("command", cmd.to_arrow(), stamp, BASE_FRAME)
            if ref.phase != phase:
                phase = ref.phase
                kind = "done" if phase == "done" else "phase"
                out.send("events", SessionEvent(kind, phase).to_arrow(), stamp, BASE_FRAME)
                print(f"force-controller: phase {phase} at {t:.2f} s", flush=True)
            if ref.mode == "stop":
                out.send("events", SessionEvent(
                    "error", f"force-controller: force {ref.force_measured_n:.1f} N over the "
                    f"cap {fcfg.force_cap_n} N; retreating").to_arrow(), stamp, BASE_FRAME)


if __name__ == "__main__":
    main()
