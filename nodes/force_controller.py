"""force-controller: hybrid motion/force control at the robot state rate.

Inputs: ``robot_state`` (trigger), ``trajectory`` and ``body_motion`` (latest values).
Outputs: ``command`` (tool reference for the robot node), ``events`` (phase changes, done).

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

from tuina.messages import BASE_FRAME, BodyMotion, Command, RobotState, SessionEvent, Trajectory
from tuina.node import (
    Outputs,
    configure,
    events,
    fail,
    raise_priority,
    stamp_of,
)
from tuina.operators.arms import arm_kinematics
from tuina.operators.force_control import ForceConfig, HybridForceController
from tuina.operators.safety import trajectory_problem
from tuina.operators.servo import joint_velocity_command, wrench_from_torques
from tuina.operators.tracking import TrackerWatch, predict
from tuina.settings.force_controller import PARAMS

LOST = ("large_motion", "lost")


def main() -> None:
    """One command per robot state."""
    cfg = configure("force-controller", PARAMS)
    raise_priority("force-controller", cfg["NICE"], cfg["REALTIME_PRIORITY"])
    from dora import Node

    fcfg = ForceConfig(kp=cfg["KP"], ki=cfg["KI"], kd=cfg["KD"],
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
    joint_output = cfg["OUTPUT"] == "joint_velocity"
    from_torques = cfg["FORCE_SOURCE"] == "joint_torques"
    arm = (arm_kinematics(cfg["ROBOT"], cfg["TOOL_LENGTH_M"]) if joint_output or from_torques
           else None)
    node = Node()
    out = Outputs(node)
    traj: Trajectory | None = None
    arrays: tuple | None = None
    start_ns: int | None = None
    controller = HybridForceController(fcfg)
    motion = np.eye(4)
    twist = np.zeros(6)
    phase = ""
    track_lost = ""  # why the tracker gave up on the current plan's reference
    watch = TrackerWatch(cfg["TRACKER_TIMEOUT_S"])
    announced = False  # the current controller's abort was reported
    last_dq: tuple[int, np.ndarray] | None = None  # stamp, joint velocities
    stop_sent = False  # the cap's error went out for this trajectory
    for event in events(node, lineage=out.lineage):
        stamp = stamp_of(event)
        if event["id"] == "trajectory":
            candidate = Trajectory.from_arrow(event["value"])
            new = (np.asarray(candidate.t_s, float),
                   np.asarray(candidate.positions, float).reshape(-1, 3),
                   np.asarray(candidate.quaternions, float).reshape(-1, 4),
                   np.asarray(candidate.forces_n, float),
                   np.asarray(candidate.normals, float).reshape(-1, 3), candidate.phases)
            problem = trajectory_problem(*new, fcfg.force_cap_n)
            if problem is not None:
                # never follow it; a massage in progress stops and backs off
                print(f"force-controller: error: {problem}; not following it", flush=True)
                out.send("events", SessionEvent("error", f"force-controller: {problem}")
                         .to_arrow(), stamp, BASE_FRAME)
                track_lost = track_lost or "a malformed trajectory arrived"
                continue
            traj, arrays = candidate, new
            start_ns, stop_sent = None, False
            controller = HybridForceController(fcfg)
            motion, twist, track_lost, announced = np.eye(4), np.zeros(6), "", False
            watch.new_plan()
        elif event["id"] == "body_motion":
            bm = BodyMotion.from_arrow(event["value"])
            watch.motion(stamp)
            # motions relative to an older reference belong to an older plan
            if traj is not None and bm.reference_stamp_ns >= traj.reference_stamp_ns:
                if bm.status == "ok":
                    motion = np.eye(4)
                    motion[:3, :3] = np.asarray(bm.rotation).reshape(3, 3)
                    motion[:3, 3] = bm.translation
                    twist = np.asarray(bm.twist)
                else:
                    twist = np.zeros(6)  # hold the last good motion, never extrapolate it
                if bm.status in LOST:
                    track_lost = track_lost or f"body tracking {bm.status.replace('_', ' ')}"
        elif event["id"] == "robot_state" and arrays is not None:
            state = RobotState.from_arrow(event["value"])
            q = np.asarray(state.q, float)
            if arm is not None and (q.shape != (arm.nq,) or not np.all(np.isfinite(q))):
                fail("force-controller", f"robot state has joints {state.q}, not the "
                     f"{arm.nq} finite values ROBOT={cfg['ROBOT']} needs; set ROBOT")
            wrench = np.asarray(state.wrench, float)
            if from_torques:
                tau = np.asarray(state.joint_torques, float)
                if tau.shape != (arm.nq,):
                    fail("force-controller", f"FORCE_SOURCE joint_torques but the robot "
                         f"reports {tau.size} joint torques; use FORCE_SOURCE wrench")
                dq = np.asarray(state.dq, float)
                if last_dq is not None and stamp > last_dq[0]:
                    ddq = (dq - last_dq[1]) / ((stamp - last_dq[0]) * 1e-9)
                else:
                    ddq = np.zeros_like(dq)
                last_dq = (stamp, dq)
                wrench = wrench_from_torques(arm.jacobian(q), tau, arm.model_torques(q, dq, ddq))
            if start_ns is None:
                # the trajectory starts at the first state the controller sees for it
                start_ns = max(stamp, traj.start_stamp_ns)
            t = (stamp - start_ns) * 1e-9
            if t < 0:
                continue
            silent, feeding, age_s = watch.state(stamp, start_ns)
            if silent and not track_lost:
                track_lost = f"no body motion for {cfg['TRACKER_TIMEOUT_S']} s"
            if track_lost and not controller.aborted and phase != "done":
                controller.abort(t, np.asarray(state.tool_position), track_lost)
            feed = twist if feeding else np.zeros(6)
            lead = cfg["FOLLOW_LEAD_S"] + age_s
            ref = controller.step(t, *arrays[:3], arrays[3], arrays[4], arrays[5],
                                  np.asarray(state.tool_position), wrench,
                                  predict(motion, feed, min(lead, cfg["MAX_LEAD_S"])), feed)
            if controller.aborted and not announced:
                announced = True
                reason = controller.abort_reason
                print(f"force-controller: {reason}: backing off", flush=True)
                out.send("events", SessionEvent("abort", f"force-controller: {reason}; backing "
                         "off").to_arrow(), stamp, BASE_FRAME)
                if controller.fault:
                    out.send("events", SessionEvent("error", f"force-controller: {reason}")
                             .to_arrow(), stamp, BASE_FRAME)
            joints = (joint_velocity_command(ref, arm, q, cfg["PBVS_GAIN"]).tolist()
                       if joint_output else [])
            cmd = Command(ref.position.tolist(), ref.quaternion.tolist(), ref.twist.tolist(),
                          ref.mode, ref.phase, ref.force_target_n, ref.force_measured_n, joints,
                          ref.normal.tolist())
            out.send("command", cmd.to_arrow(), stamp, BASE_FRAME)
            if ref.phase != phase:
                phase = ref.phase
                kind = "done" if phase == "done" else "phase"
                out.send("events", SessionEvent(kind, phase).to_arrow(), stamp, BASE_FRAME)
                print(f"force-controller: phase {phase} at {t:.2f} s", flush=True)
            if ref.mode == "stop" and not stop_sent:
                stop_sent = True
                out.send("events", SessionEvent(
                    "error", f"force-controller: force {ref.force_measured_n:.1f} N over the "
                    f"cap {fcfg.force_cap_n} N; retreating").to_arrow(), stamp, BASE_FRAME)


if __name__ == "__main__":
    main()
