"""planner: target pose -> time-parameterised massage trajectory with IK.

Inputs: ``target_pose`` (trigger; its ``hold_s``, when set, replaces PRESS_S for that
step), ``robot_state`` (latest value: start pose, joints, clock),
``depth`` and ``camera_info`` (latest: what the arm must keep clear of).
Outputs: ``trajectory``, ``events`` (errors: no reachable pose, naming what blocks it).

The ball presses the same way from a range of angles: when the arm cannot reach the target
with the tool straight along the surface normal, the tool is tilted (up to MAX_TILT_DEG,
every direction) and turned about the normal until a pose is reached well inside the joint
limits, away from singularities, with the whole plan inside the workspace box and the arm,
hand and tool clear of everything the camera sees (the body, the table) outside the contact
itself; the force is still regulated along the normal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from tuina.operators.arms import arm_kinematics, arm_model
from tuina.operators.planner import (
    ArmParts,
    ClearanceConfig,
    PlannerConfig,
    PlanningError,
    ReachConfig,
    collision_problem,
    plan_reachable,
    seen_points,
)

from tuina.messages import (
    BASE_FRAME,
    CameraInfo,
    RobotState,
    SessionEvent,
    TargetPose,
    Trajectory,
    decode_depth,
)
from tuina.runtime import Outputs, configure, events, stamp_of
from tuina.settings.planner import PARAMS


def clear_of_what_is_seen(depth_event: dict | None, info: CameraInfo | None, cfg: dict,
                          parts_of: ArmParts, q: np.ndarray,
                          contact: np.ndarray) -> Callable[[np.ndarray, list[str]], str]:
    """Joints and phases -> why the arm there would strike what the latest depth frame shows
    outside the contact zone about ``contact`` (the target and the stroke's path) ("" when
    clear); PlanningError when there is no frame to check against."""
    if depth_event is None or info is None:
        raise PlanningError("no depth frame yet: the arm's way cannot be checked against the "
                            "body; wire camera/depth and camera/camera_info into the planner")
    clearance = ClearanceConfig(cfg["ARM_CLEARANCE_M"], cfg["HAND_CLEARANCE_M"],
                                cfg["TOOL_CLEARANCE_M"], cfg["CONTACT_ZONE_M"])
    stride, grow = cfg["DEPTH_STRIDE"], cfg["ARM_CLEARANCE_M"]
    depth = decode_depth(depth_event["value"], depth_event["metadata"], stride)
    seen = seen_points(depth, info.K, info.extrinsics, stride,
                       np.asarray(cfg["WORKSPACE_MIN"]) - grow,
                       np.asarray(cfg["WORKSPACE_MAX"]) + grow, parts_of(q),
                       (cfg["ARM_MASK_M"], cfg["ARM_MASK_M"], clearance.tool_radius_m + 0.02))
    return lambda joints, phases: collision_problem(parts_of, joints, phases, seen, contact,
                                                    clearance)


def check_state(state: RobotState | None, nq: int, robot: str) -> None:
    """PlanningError when there is no robot state to plan from, or it is another arm's."""
    if state is None:
        raise PlanningError("no robot state yet; is the robot node running?")
    if len(state.q) != nq:
        raise PlanningError(f"the robot reports {len(state.q)} joints but ROBOT={robot} has "
                            f"{nq}; set ROBOT to the arm in the graph")


def main() -> None:
    """Plan a trajectory for every target pose."""
    cfg = configure("planner", PARAMS)
    from dora import Node

    arm = arm_kinematics(cfg["ROBOT"], cfg["TOOL_LENGTH_M"])
    parts_of = arm_model(cfg["ROBOT"], cfg["TOOL_LENGTH_M"]).parts
    pcfg = PlannerConfig(standoff_m=cfg["STANDOFF_M"], clearance_m=cfg["CLEARANCE_M"],
                         max_speed=cfg["MAX_SPEED"], max_accel=cfg["MAX_ACCEL"],
                         max_jerk=cfg["MAX_JERK"], press_s=cfg["PRESS_S"],
                         stroke_speed=cfg["STROKE_SPEED"], dt=cfg["DT"])
    reach = ReachConfig(max_tilt_deg=cfg["MAX_TILT_DEG"], ball_radius_m=cfg["BALL_RADIUS_M"])
    node = Node()
    out = Outputs(node)
    state: RobotState | None = None
    state_stamp = 0
    depth_event: dict | None = None
    info: CameraInfo | None = None
    for event in events(node, lineage=out.lineage):
        stamp = stamp_of(event)
        if event["id"] == "robot_state":
            state, state_stamp = RobotState.from_arrow(event["value"]), stamp
        elif event["id"] == "depth":
            depth_event = event
        elif event["id"] == "camera_info":
            info = CameraInfo.from_arrow(event["value"])
        elif event["id"] == "target_pose":
            target = TargetPose.from_arrow(event["value"])
            try:
                check_state(state, arm.nq, cfg["ROBOT"])
                contact = np.vstack([target.position, np.reshape(target.path, (-1, 3))])
                collision = clear_of_what_is_seen(depth_event, info, cfg, parts_of,
                                                  np.asarray(state.q), contact)
                reached = plan_reachable(
                    arm, np.asarray(state.q), np.asarray(state.tool_position),
                    np.asarray(state.tool_quaternion), np.asarray(target.position),
                    np.asarray(target.normal), np.asarray(target.quaternion),
                    np.asarray(target.path).reshape(-1, 3), target.force_n, target.technique,
                    replace(pcfg, press_s=target.hold_s) if target.hold_s > 0 else pcfg,
                    reach, np.asarray(cfg["WORKSPACE_MIN"]),
                    np.asarray(cfg["WORKSPACE_MAX"]), collision)
            except PlanningError as err:
                print(f"tuina-planner: error: {err}", file=sys.stderr, flush=True)
                out.send("events", SessionEvent("error", f"planner: {err}").to_arrow(),
                         stamp, BASE_FRAME)
                continue
            plan = reached.plan
            # start a little after the state it was planned from, in robot time
            msg = Trajectory(state_stamp + int(0.05e9), plan.t_s.tolist(),
                             plan.positions.ravel().tolist(), plan.quaternions.ravel().tolist(),
                             plan.forces_n.tolist(), plan.phases, plan.normals.ravel().tolist(),
                             plan.joints.ravel().tolist(), target.code, target.source_stamp_ns)
            out.send("trajectory", msg.to_arrow(), stamp, BASE_FRAME)
            tilt = f", the ball tilted {reached.tilt_deg:.0f} deg off the normal" \
                if reached.tilt_deg else ""
            print(f"planner: {target.code}: {len(plan.t_s)} samples, "
                  f"{plan.t_s[-1]:.1f} s{tilt}", flush=True)


if __name__ == "__main__":
    main()
