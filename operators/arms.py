"""The arms tuina drives, as pinocchio models with a massage-ball tool frame.

``fr3``: the Franka FR3 (franky-sim's URDF); ``baxter_left``: the Baxter's left arm
(example-robot-data's URDF, every other joint locked at zero). One class serves both: tool
pose, damped least-squares IK with joint limits and a null-space posture task, the tool
Jacobian and the gravity torques.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pinocchio as pin
from scipy.spatial.transform import Rotation

# franky's end-effector frame on an FR3: 0.1034 m past the flange, turned -45 deg about z
FR3_FLANGE = "link8"
FR3_FLANGE_TO_EE_M = 0.1034
FR3_POSTURE = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785])  # null-space posture (rad)
BAXTER_LEFT_JOINTS = ("left_s0", "left_s1", "left_e0", "left_e1", "left_w0", "left_w1",
                      "left_w2")
BAXTER_LEFT_FLANGE = "left_gripper"  # the endpoint baxter_interface reports
BAXTER_POSTURE = np.array([0.0, -0.55, 0.0, 0.75, 0.0, 1.26, 0.0])  # baxter "neutral" (rad)
ARMS = ("fr3", "baxter_left")


class PlanningError(ValueError):
    """No safe trajectory exists for this target."""


def fr3_flange_T_tool(tool_length_m: float) -> np.ndarray:
    """The tool contact frame in the FR3 flange frame, ``tool_length_m`` past franky's EE."""
    return pin.SE3(pin.rpy.rpyToMatrix(0.0, 0.0, -np.pi / 4),
                   np.array([0.0, 0.0, FR3_FLANGE_TO_EE_M + tool_length_m])).homogeneous


def baxter_urdf_path() -> str:
    """The Baxter URDF shipped by the example-robot-data wheel."""
    from importlib import metadata

    try:
        files = metadata.files("example-robot-data") or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == "baxter.urdf":
            return str(f.locate())
    raise PlanningError("no Baxter model: pip install example-robot-data (the project's "
                        "dependencies include it; re-run `make setup`)")


def load_arm(arm: str) -> tuple[pin.Model, str, np.ndarray]:
    """(model, flange frame, posture) of an arm in ARMS."""
    if arm == "fr3":
        from franky_sim.urdf import FR3_URDF

        return pin.buildModelFromXML(FR3_URDF), FR3_FLANGE, FR3_POSTURE
    if arm == "baxter_left":
        full = pin.buildModelFromUrdf(baxter_urdf_path())
        keep = {full.getJointId(name) for name in BAXTER_LEFT_JOINTS}
        locked = [j for j in range(1, full.njoints) if j not in keep]
        return (pin.buildReducedModel(full, locked, pin.neutral(full)), BAXTER_LEFT_FLANGE,
                BAXTER_POSTURE)
    raise ValueError(f"unknown arm {arm!r}; choose one of {', '.join(ARMS)}")


@dataclass
class ArmKinematics:
    """An arm with a tool contact frame ``flange_T_tool`` past ``flange_frame``."""

    model: pin.Model
    flange_frame: str
    flange_T_tool: np.ndarray
    posture: np.ndarray
    damping: float = 1e-3
    posture_gain: float = 0.1

    def __post_init__(self) -> None:
        flange = self.model.getFrameId(self.flange_frame)
        frame = self.model.frames[flange]
        self.tool = self.model.addFrame(pin.Frame(
            "massage_tool", frame.parentJoint, flange,
            frame.placement * pin.SE3(np.asarray(self.flange_T_tool, float)),
            pin.FrameType.OP_FRAME))
        self.data = self.model.createData()
        self.posture = np.asarray(self.posture, float)
        self.lower = self.model.lowerPositionLimit
        self.upper = self.model.upperPositionLimit
        self.velocity_limit = self.model.velocityLimit

    @property
    def nq(self) -> int:
        """Number of joints."""
        return self.model.nq

    def forward(self, q: np.ndarray) -> pin.SE3:
        """Tool pose in the base frame."""
        pin.framesForwardKinematics(self.model, self.data, np.asarray(q, float))
        return self.data.oMf[self.tool].copy()

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """6 x nq Jacobian of the tool point: (v, w) in the base frame."""
        return pin.computeFrameJacobian(self.model, self.data, np.asarray(q, float), self.tool,
                                        pin.LOCAL_WORLD_ALIGNED)

    def gravity_torques(self, q: np.ndarray) -> np.ndarray:
        """The joint torques that hold the arm still against gravity."""
        return pin.computeGeneralizedGravity(self.model, self.data, np.asarray(q, float)).copy()

    def model_torques(self, q: np.ndarray, dq: np.ndarray, ddq: np.ndarray) -> np.ndarray:
        """The joint torques the arm's own motion takes: M(q) q'' + C(q, q') q' + g(q)."""
        return pin.rnea(self.model, self.data, np.asarray(q, float), np.asarray(dq, float),
                        np.asarray(ddq, float)).copy()

    def solve(self, target: pin.SE3, q0: np.ndarray, iterations: int = 100,
              tol: float = 1e-4, posture_gain: float | None = None) -> np.ndarray:
        """Joint solution near q0; raises PlanningError when the pose is out of reach."""
        gain = self.posture_gain if posture_gain is None else posture_gain
        q = np.asarray(q0, float).copy()
        err = np.full(6, np.inf)
        for _ in range(iterations):
            current = self.forward(q)
            err = pin.log6(current.actInv(target)).vector
            if np.linalg.norm(err) < tol:
                return q
            J = pin.computeFrameJacobian(self.model, self.data, q, self.tool, pin.LOCAL)
            JJt = J @ J.T + self.damping * np.eye(6)
            dq = J.T @ np.linalg.solve(JJt, err)
            null = np.eye(len(q)) - np.linalg.pinv(J) @ J
            dq += null @ (gain * (self.posture - q))
            q = np.clip(q + dq, self.lower, self.upper)
        raise PlanningError(f"no IK solution for tool position {np.round(target.translation, 3)}"
                            f" (residual {np.linalg.norm(err):.3g}); the target is out of reach")

    def solve_path(self, positions: np.ndarray, quaternions: np.ndarray, q0: np.ndarray,
                   dt: float, posture_speed: float = 0.2) -> np.ndarray:
        """Joints for every pose of a path sampled every ``dt`` s, each solved from the
        previous one, so the joint path is as continuous as the Cartesian one. The posture
        task moves the joints in the Jacobian's null space at most ``posture_speed`` times
        each joint's velocity limit (a full-gain posture pull inside every solve would
        jump along the null space whenever a sample needs iterating)."""
        q = np.asarray(q0, float)
        joints = np.zeros((len(positions), self.nq))
        drift_limit = posture_speed * self.velocity_limit * dt
        for i, (p, quat) in enumerate(zip(positions, quaternions, strict=True)):
            J = self.jacobian(q)
            drift = (np.eye(self.nq) - np.linalg.pinv(J) @ J) @ (self.posture - q)
            drift *= min(1.0, float(np.min(drift_limit / np.maximum(np.abs(drift), 1e-12))))
            start = np.clip(q + drift, self.lower, self.upper)
            q = self.solve(pin.SE3(Rotation.from_quat(quat).as_matrix(), p), start,
                           posture_gain=0.0)
            joints[i] = q
        return joints


def arm_kinematics(arm: str, tool_length_m: float) -> ArmKinematics:
    """The arm with its massage ball ``tool_length_m`` past the flange's tool mount (franky's
    EE frame on an FR3, the gripper endpoint on a Baxter)."""
    model, flange, posture = load_arm(arm)
    if arm == "fr3":
        flange_T_tool = fr3_flange_T_tool(tool_length_m)
    else:
        flange_T_tool = pin.SE3(np.eye(3), np.array([0.0, 0.0, tool_length_m])).homogeneous
    return ArmKinematics(model, flange, flange_T_tool, posture)


class ArmModel:
    """Where the arm is: its kinematic chain as a polyline, to mask it out of body clouds.

    The polyline runs through every joint origin, the flange, the tool contact point and
    across the hand (``hand_points`` in the flange frame): with a radius it covers links,
    hand and tool.
    """

    def __init__(self, arm: ArmKinematics, hand_points: np.ndarray):
        self.arm = arm
        self.flange = arm.model.getFrameId(arm.flange_frame)
        self.hand_points = np.asarray(hand_points, float).reshape(-1, 3)

    def parts(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Polylines (base frame) of the links (the joint origins), the hand (the last
        joint, the flange, across the hand, the flange) and the tool (flange to the tool
        point) at q. The flange is the hand's: on a Baxter it is the gripper's endpoint,
        a few cm off the skin while pressing."""
        arm = self.arm
        tool = arm.forward(q).translation  # also places every joint and frame
        joints = [arm.data.oMi[i].translation for i in range(arm.model.njoints)]
        flange = arm.data.oMf[self.flange].homogeneous
        hand = self.hand_points @ flange[:3, :3].T + flange[:3, 3]
        return (np.vstack(joints),
                np.vstack([joints[-1], flange[:3, 3], *hand, flange[:3, 3]]),
                np.vstack([flange[:3, 3], tool]))

    def chain(self, q: np.ndarray) -> np.ndarray:
        """Polyline of the arm in the base frame for joint positions q: the links, the hand
        crosswise, back through the flange, then down to the tool."""
        links, hand, tool = self.parts(q)
        return np.vstack([links, hand[1:], tool[1:]])


def arm_model(robot: str, tool_length_m: float) -> ArmModel | None:
    """Kinematic chain of the arm in view, for masking; None when no arm is in view."""
    if robot == "none":
        return None
    arm = arm_kinematics(robot, tool_length_m)
    finger_axis = arm.flange_T_tool[:3, 1]  # the hand's fingers open along the tool frame's y
    # the FR3's flange is link8, with the hand beyond it; a Baxter's is the gripper's
    # endpoint, with the gripper behind it
    along = 0.05 if robot == "fr3" else -0.05
    hand = np.array([0.08 * finger_axis + [0, 0, along], -0.08 * finger_axis + [0, 0, along]])
    return ArmModel(arm, hand)
