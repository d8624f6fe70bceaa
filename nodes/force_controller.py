"""force-controller: hybrid motion/force control at the robot state rate.

Inputs: ``robot_state`` (trigger), ``trajectory`` and ``body_motion`` (latest values),
``force_target`` (Float64[1], N: the console's pressure slider scales the current plan's
force profile to it, under 0.9 FORCE_CAP_N), ``events_console`` (the console's ``pause``:
the massage backs off along the normal and holds, trajectories are not followed until its
``resume``; the console then sends the step again).
Outputs: ``command`` (tool reference for the robot node), ``events`` (phase changes, done,
aborts, ``paused``).

The command is the tool reference pose with its feed-forward twist: franky's Cartesian
impedance closes the pose error (the PBVS set point) at 1 kHz. With OUTPUT joint_velocity
(a Baxter) the command also carries q' = J^+ v_robot (VBRM Eq. 10-19): PBVS with the
interaction matrix towards the reference, the force loop's speed along the normal, S
splitting the two. FORCE_SOURCE joint_torques estimates the contact force as
F = (J^T)^+ (tau - g(q)) (Eq. 15) for robots that report no wrench.

Body motion: the trajectory follows the tracker's R, t (P_u = R P_d + t, rate-limited)
when the motion is relative to the frame the trajectory was planned on. A frame the
tracker does not trust freezes the motion where it was (never chasing a bad estimate); the
body velocity is fed forward for two frame periods of the tracker's stream at most. A lost
track (a large motion), no body motion for TRACKER_TIMEOUT_S of robot time from the
trajectory's start, or a contact lost at once aborts the massage: the tool backs off along
the normal and holds until a new trajectory (after re-grounding) arrives. A force reading
that jumps while in contact is a fault, an abort and an error (the robot releases): the
body pushing into the tool when the tool was thrown back with it, else a force jump (the
sensor, or a body moving faster than the arm gives way: the two cannot be told apart).
A force over FORCE_CAP_N stops the controller until the next trajectory.
"""

from __future__ import annotations

import numpy as np
from tuina.operators.arms import arm_kinematics
from tuina.operators.force_control import PlanFollower
from tuina.operators.servo import joint_velocity_command, wrench_from_torques

from tuina.messages import BASE_FRAME, BodyMotion, Command, RobotState, SessionEvent, Trajectory
from tuina.runtime import (
    Outputs,
    configure,
    events,
    fail,
    raise_priority,
    stamp_of,
)
from tuina.settings.force_controller import PARAMS, force_config


def torque_wrench(state: RobotState, arm, stamp: int, last_dq: tuple[int, np.ndarray] | None
                  ) -> tuple[np.ndarray, tuple[int, np.ndarray]]:
    """The contact wrench from the measured joint torques, F = (J^T)^+ (tau - model torques),
    and the joint velocities the next call differentiates against."""
    tau = np.asarray(state.joint_torques, float)
    if tau.shape != (arm.nq,):
        fail("force-controller", f"FORCE_SOURCE joint_torques but the robot reports "
             f"{tau.size} joint torques; use FORCE_SOURCE wrench")
    q, dq = np.asarray(state.q, float), np.asarray(state.dq, float)
    if last_dq is not None and stamp > last_dq[0]:
        ddq = (dq - last_dq[1]) / ((stamp - last_dq[0]) * 1e-9)
    else:
        ddq = np.zeros_like(dq)
    return wrench_from_torques(arm.jacobian(q), tau, arm.model_torques(q, dq, ddq)), (stamp, dq)


def main() -> None:
    """One command per robot state."""
    cfg = configure("force-controller", PARAMS)
    raise_priority("force-controller", cfg["NICE"], cfg["REALTIME_PRIORITY"])
    from dora import Node

    fcfg = force_config(cfg)
    joint_output = cfg["OUTPUT"] == "joint_velocity"
    from_torques = cfg["FORCE_SOURCE"] == "joint_torques"
    arm = (arm_kinematics(cfg["ROBOT"], cfg["TOOL_LENGTH_M"]) if joint_output or from_torques
           else None)
    node = Node()
    out = Outputs(node)
    follower = PlanFollower(fcfg, cfg["TRACKER_TIMEOUT_S"], cfg["FOLLOW_LEAD_S"],
                            cfg["MAX_LEAD_S"])
    last_dq: tuple[int, np.ndarray] | None = None  # stamp, joint velocities
    for event in events(node, lineage=out.lineage):
        stamp = stamp_of(event)
        if event["id"] == "trajectory" and follower.paused:
            print("force-controller: paused: a new trajectory is not followed until the "
                  "person resumes", flush=True)
        elif event["id"] == "trajectory":
            traj = Trajectory.from_arrow(event["value"])
            problem = follower.new_plan(traj.plan(), traj.start_stamp_ns,
                                        traj.reference_stamp_ns)
            if problem is not None:
                print(f"force-controller: error: {problem}; not following it", flush=True)
                out.send("events", SessionEvent("error", f"force-controller: {problem}")
                         .to_arrow(), stamp, BASE_FRAME)
        elif event["id"] == "events_console":  # the person's pause and resume
            follower.on_console(SessionEvent.from_arrow(event["value"]))
        elif event["id"] == "force_target":  # the person's pressure, live
            now = follower.set_force_target(float(event["value"][0].as_py()))
            print(f"force-controller: force target {now:.1f} N", flush=True)
        elif event["id"] == "body_motion":
            follower.on_motion(BodyMotion.from_arrow(event["value"]), stamp)
        elif event["id"] == "robot_state" and follower.plan is not None:
            state = RobotState.from_arrow(event["value"])
            q = np.asarray(state.q, float)
            if arm is not None and (q.shape != (arm.nq,) or not np.all(np.isfinite(q))):
                fail("force-controller", f"robot state has joints {state.q}, not the "
                     f"{arm.nq} finite values ROBOT={cfg['ROBOT']} needs; set ROBOT")
            wrench = np.asarray(state.wrench, float)
            if from_torques:
                wrench, last_dq = torque_wrench(state, arm, stamp, last_dq)
            ref, notices = follower.step(stamp, np.asarray(state.tool_position), wrench)
            if ref is None:
                continue
            joints = (joint_velocity_command(ref, arm, q, cfg["PBVS_GAIN"],
                                             cfg["MAX_JOINT_SPEED"]).tolist()
                      if joint_output else [])
            cmd = Command(ref.position.tolist(), ref.quaternion.tolist(), ref.twist.tolist(),
                          ref.mode, ref.phase, ref.force_target_n, ref.force_measured_n, joints,
                          ref.normal.tolist())
            out.send("command", cmd.to_arrow(), stamp, BASE_FRAME)
            for notice in notices:
                if notice.say:
                    print(notice.say, flush=True)
                out.send("events", SessionEvent(notice.kind, notice.detail).to_arrow(), stamp,
                         BASE_FRAME)


if __name__ == "__main__":
    main()
