"""Visual servoing and joint-space mapping of VBRM's hybrid controller (Eq. 9-19).

Conventions: poses are 4x4 homogeneous matrices in the robot base frame; a twist is
(v, w) with v the velocity of the tool contact point and w the angular velocity, both in
the base frame; a wrench is (f, m), the force and moment the robot applies at the tool.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation
from tuina.operators.arms import ArmKinematics
from tuina.operators.force_control import ControlOutput


def skew(v: np.ndarray) -> np.ndarray:
    """[v]x: the cross-product matrix of a 3-vector."""
    x, y, z = np.asarray(v, float)
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def pbvs_error(current: np.ndarray, desired: np.ndarray) -> np.ndarray:
    """e = (t, theta u) of Eq. 9: the tool position error and the rotation vector of
    R_current R_desired^T, both in the base frame."""
    t = current[:3, 3] - desired[:3, 3]
    theta_u = Rotation.from_matrix(current[:3, :3] @ desired[:3, :3].T).as_rotvec()
    return np.concatenate([t, theta_u])


def l_theta_u(theta_u: np.ndarray) -> np.ndarray:
    """L_theta_u of Eq. 12: d(theta u)/dt = L_theta_u w."""
    theta_u = np.asarray(theta_u, float)
    theta = float(np.linalg.norm(theta_u))
    if theta < 1e-9:
        return np.eye(3)
    ux = skew(theta_u / theta)
    sinc = np.sinc(theta / np.pi)  # numpy's sinc is sin(pi x)/(pi x)
    sinc_half = np.sinc(theta / 2 / np.pi)
    return np.eye(3) - theta / 2 * ux + (1.0 - sinc / sinc_half**2) * ux @ ux


def interaction_matrix_inverse(theta_u: np.ndarray, lever: np.ndarray | None = None) -> np.ndarray:
    """L_e^-1 of Eq. 11 for e = (t, theta u).

    ``lever`` is the vector from the tool point to the point whose velocity the twist
    gives (zero: the tool point itself); [lever]x L_theta_u^-1 is Eq. 11's upper-right block.
    """
    inv = np.linalg.inv(l_theta_u(theta_u))
    lever = np.zeros(3) if lever is None else np.asarray(lever, float)
    out = np.zeros((6, 6))
    out[:3, :3] = np.eye(3)
    out[:3, 3:] = -skew(lever) @ inv
    out[3:, 3:] = inv
    return out


def pbvs_twist(current: np.ndarray, desired: np.ndarray, gain: float | np.ndarray,
               lever: np.ndarray | None = None) -> np.ndarray:
    """v_e = -lambda L_e^-1 e (Eq. 10): the twist that closes the pose error exponentially."""
    e = pbvs_error(current, desired)
    return -np.asarray(gain, float) * (interaction_matrix_inverse(e[3:], lever) @ e)


def selection_matrix(normal: np.ndarray) -> np.ndarray:
    """S of Eq. 18 for a surface normal n: motion in the tangent plane and all rotations;
    I - S is the force-controlled direction (VBRM's z, here along n)."""
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    S = np.eye(6)
    S[:3, :3] -= np.outer(n, n)
    return S


def hybrid_twist(servo_twist: np.ndarray, normal: np.ndarray, normal_speed: float) -> np.ndarray:
    """v_robot = S v_s + (I - S) v_f (Eq. 17); ``normal_speed`` moves the tool into the body
    (along -n) at that speed."""
    S = selection_matrix(normal)
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    force_twist = np.concatenate([-n * normal_speed, np.zeros(3)])
    return S @ np.asarray(servo_twist, float) + (np.eye(6) - S) @ force_twist


def damped_pinv(J: np.ndarray, damping: float = 1e-4) -> np.ndarray:
    """J^T (J J^T + damping I)^-1: the pseudo-inverse, bounded near singularities."""
    return J.T @ np.linalg.inv(J @ J.T + damping * np.eye(J.shape[0]))


def joint_velocities(jacobian: np.ndarray, twist: np.ndarray, q: np.ndarray,
                     posture: np.ndarray, velocity_limit: np.ndarray,
                     posture_gain: float = 0.5, damping: float = 1e-4) -> np.ndarray:
    """q' = J^+ v_robot (Eq. 19) plus a posture task in J's null space, scaled down as a
    whole (direction kept) so that no joint exceeds its velocity limit."""
    J_pinv = damped_pinv(jacobian, damping)
    null = np.eye(jacobian.shape[1]) - J_pinv @ jacobian
    dq = J_pinv @ np.asarray(twist, float) + null @ (posture_gain * (posture - q))
    ratio = float(np.max(np.abs(dq) / np.asarray(velocity_limit, float)))
    return dq / ratio if ratio > 1.0 else dq


def wrench_from_torques(jacobian: np.ndarray, torques: np.ndarray,
                        gravity_torques: np.ndarray) -> np.ndarray:
    """F = (J^T)^+ tau_ext (Eq. 15), tau_ext = measured joint torques minus the model's
    gravity torques: the wrench the robot applies at the tool (quasi-static)."""
    tau_ext = np.asarray(torques, float) - np.asarray(gravity_torques, float)
    return np.linalg.pinv(jacobian.T) @ tau_ext


def joint_velocity_command(reference: ControlOutput, arm: ArmKinematics, q: np.ndarray,
                           gain: float, max_speed: float = np.inf) -> np.ndarray:
    """The hybrid controller's joint velocities for a joint-velocity robot (a Baxter).

    v_s = the reference's feed-forward twist + PBVS towards the reference pose (Eq. 10-14);
    in contact the normal belongs to the force loop: its speed into the body plus the
    surface's own normal velocity (Eq. 16-18); q' = J^+ v_robot (Eq. 19), no joint faster
    than ``max_speed`` or its model limit.
    """
    q = np.asarray(q, float)
    current = arm.forward(q).homogeneous
    desired = np.eye(4)
    desired[:3, :3] = Rotation.from_quat(reference.quaternion).as_matrix()
    desired[:3, 3] = reference.position
    feed_forward = np.asarray(reference.twist, float)
    servo = feed_forward + pbvs_twist(current, desired, gain)
    if reference.force_controlled:
        n = np.asarray(reference.normal, float)
        servo = hybrid_twist(servo, n, reference.normal_speed - float(feed_forward[:3] @ n))
    return joint_velocities(arm.jacobian(q), servo, q, arm.posture,
                            np.minimum(arm.velocity_limit, max_speed))
