"""VBRM's visual servoing, selection, joint-velocity mapping and torque-based force (Eq. 9-19)."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from tuina.operators.arms import arm_kinematics
from tuina.operators.force_control import ForceConfig, HybridForceController
from tuina.operators.servo import (
    hybrid_twist,
    interaction_matrix_inverse,
    joint_velocities,
    joint_velocity_command,
    l_theta_u,
    pbvs_error,
    pbvs_twist,
    selection_matrix,
    wrench_from_torques,
)

from .test_operators import baxter_press_plan


def pose(rotvec, position) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = position
    return T


def integrate(T: np.ndarray, twist: np.ndarray, dt: float) -> np.ndarray:
    """Move a pose by a twist (v at its origin, w; base frame) for dt."""
    out = T.copy()
    out[:3, :3] = Rotation.from_rotvec(twist[3:] * dt).as_matrix() @ T[:3, :3]
    out[:3, 3] = T[:3, 3] + twist[:3] * dt
    return out


@pytest.mark.parametrize("angle", [0.0, 0.3, 1.5, 2.8])
def test_l_theta_u_is_the_rate_of_theta_u(angle):
    rng = np.random.default_rng(1)
    desired = pose(rng.normal(size=3), [0, 0, 0])
    axis = rng.normal(size=3)
    current = pose(axis / np.linalg.norm(axis) * angle, [0, 0, 0]) @ desired
    w = rng.normal(size=3)
    h = 1e-6
    e0 = pbvs_error(current, desired)[3:]
    e1 = pbvs_error(integrate(current, np.r_[0, 0, 0, w], h), desired)[3:]
    np.testing.assert_allclose((e1 - e0) / h, l_theta_u(e0) @ w, atol=1e-4)


def test_pbvs_closes_the_error_exponentially_on_a_straight_line():
    desired = pose([0.0, 0.0, 0.0], [0.4, 0.1, 0.2])
    current = pose([0.3, -0.2, 0.5], [0.45, 0.05, 0.25])
    e_start = pbvs_error(current, desired)
    gain, dt = 2.0, 0.001
    T = current
    for _ in range(1000):  # 1 s
        T = integrate(T, pbvs_twist(T, desired, gain), dt)
        # the tool moves straight at the goal: the error keeps its direction
        e = pbvs_error(T, desired)
        assert np.linalg.norm(np.cross(e[:3], e_start[:3])) < 1e-9
    np.testing.assert_allclose(pbvs_error(T, desired), e_start * np.exp(-gain), atol=2e-4)


def test_lever_gives_the_velocity_of_another_point():
    e = np.r_[0.01, -0.02, 0.03, 0.2, -0.1, 0.3]
    lever = np.array([0.0, 0.0, -0.1])  # e.g. the flange, 10 cm above the tool point
    at_tool = -1.5 * (interaction_matrix_inverse(e[3:]) @ e)
    at_lever = -1.5 * (interaction_matrix_inverse(e[3:], lever) @ e)
    np.testing.assert_allclose(at_lever[:3], at_tool[:3] + np.cross(at_tool[3:], lever),
                               atol=1e-15)
    np.testing.assert_allclose(at_lever[3:], at_tool[3:])


def test_selection_gives_the_normal_to_the_force_loop():
    n = np.array([0.0, 0.6, 0.8])
    S = selection_matrix(n)
    np.testing.assert_allclose(S[:3, :3] @ n, 0, atol=1e-12)
    np.testing.assert_allclose(S[3:, 3:], np.eye(3))
    servo = np.r_[0.01, 0.02, 0.03, 0.1, 0.2, 0.3]
    v = hybrid_twist(servo, n, normal_speed=0.004)
    assert v[:3] @ n == pytest.approx(-0.004)  # into the body at the force loop's speed
    tangential = servo[:3] - (servo[:3] @ n) * n
    np.testing.assert_allclose(v[:3] - (v[:3] @ n) * n, tangential, atol=1e-12)
    np.testing.assert_allclose(v[3:], servo[3:])


@pytest.mark.parametrize("arm_name", ["fr3", "baxter_left"])
def test_joint_velocities_realise_the_twist_within_the_limits(arm_name):
    arm = arm_kinematics(arm_name, 0.05)
    q = arm.posture + 0.1
    J = arm.jacobian(q)
    twist = np.r_[0.02, -0.01, 0.03, 0.05, 0.0, -0.1]
    dq = joint_velocities(J, twist, q, q, arm.velocity_limit)  # at the posture: no null motion
    np.testing.assert_allclose(J @ dq, twist, atol=1e-3)  # damping: off by < 1 mm/s
    # the Jacobian really is the tool's: a small joint step moves the tool by J dq dt
    p0 = arm.forward(q).translation
    np.testing.assert_allclose((arm.forward(q + dq * 1e-5).translation - p0) / 1e-5, twist[:3],
                               atol=1e-3)
    fast = joint_velocities(J, twist * 1000, q, q, arm.velocity_limit)
    assert np.all(np.abs(fast) <= arm.velocity_limit + 1e-9)
    np.testing.assert_allclose(fast / np.linalg.norm(fast), dq / np.linalg.norm(dq), atol=1e-6)


@pytest.mark.parametrize("arm_name", ["fr3", "baxter_left"])
def test_contact_force_from_joint_torques(arm_name):
    arm = arm_kinematics(arm_name, 0.05)
    q = arm.posture + 0.05
    J = arm.jacobian(q)
    applied = np.r_[1.0, -2.0, -6.0, 0.0, 0.0, 0.0]  # the robot pushes down with 6 N
    tau = arm.gravity_torques(q) + J.T @ applied  # what the joints measure, holding still
    np.testing.assert_allclose(wrench_from_torques(J, tau, arm.gravity_torques(q)), applied,
                               atol=1e-9)
    # forgetting gravity would read tens of newtons: the model's gravity matters
    assert np.linalg.norm(wrench_from_torques(J, tau, np.zeros(arm.nq))[:3] - applied[:3]) > 5


def test_baxter_presses_at_6_n_with_joint_velocities_and_torque_sensing():
    """The whole of Eq. 9-19 in a loop: a kinematic Baxter arm on a compliant surface, its
    force estimated from joint torques, driven only by joint velocities."""
    arm = arm_kinematics("baxter_left", 0.05)
    q = arm.posture.copy()
    plan, target = baxter_press_plan(arm, press_s=3.0)
    controller = HybridForceController(ForceConfig())
    stiffness = 1100.0  # N/m: soft tissue, ~5.5 mm at 6 N
    dt, t = 0.01, 0.0
    log = []
    while t < 25.0:
        tool = arm.forward(q)
        depth = max(0.0, target[2] - tool.translation[2])
        applied = np.r_[0.0, 0.0, -stiffness * depth, 0.0, 0.0, 0.0]
        J = arm.jacobian(q)
        tau = arm.gravity_torques(q) + J.T @ applied
        wrench = wrench_from_torques(J, tau, arm.gravity_torques(q))
        ref = controller.step(t, plan, tool.translation, wrench, np.eye(4))
        dq = joint_velocity_command(ref, arm, q, gain=4.0)
        assert np.all(np.abs(dq) <= arm.velocity_limit + 1e-9)
        q = np.clip(q + dq * dt, arm.lower, arm.upper)
        log.append((t, ref.phase, stiffness * depth, *tool.translation))
        t += dt
        if ref.phase == "done":
            break
    phases = [row[1] for row in log]
    assert phases[-1] == "done" and not controller.aborted
    press = np.array([row for row in log if row[1] == "press"], dtype=object)
    settled = press[press[:, 0] > press[0, 0] + 1.0]
    force = settled[:, 2].astype(float)
    assert abs(force.mean() - 6.0) < 0.2 and np.sqrt(np.mean((force - 6.0) ** 2)) < 0.3
    xy = settled[:, 3:5].astype(float)
    assert np.max(np.linalg.norm(xy - target[:2], axis=1)) < 1e-3
    assert max(row[2] for row in log) < 15.0
    final = arm.forward(q)
    assert final.translation[2] > target[2] + 0.1  # retreated off the body
    np.testing.assert_allclose(final.rotation[:, 2], [0, 0, -1], atol=1e-2)


def test_a_baxter_command_never_exceeds_the_speed_its_robot_node_accepts():
    from pathlib import Path

    from tuina.nodes.baxter import velocity_problem
    from tuina.operators.force_control import ControlOutput

    from tuina.config import load
    from tuina.messages import Command
    from tuina.settings import baxter, force_controller

    rig = {"RIG": str(Path(__file__).parents[1] / "dataflows" / "rigs" / "baxter-left.yml")}
    limit = load("force-controller", force_controller.PARAMS, rig)["MAX_JOINT_SPEED"]
    assert limit == load("robot", baxter.PARAMS, rig)["MAX_JOINT_SPEED"] == 1.0
    arm = arm_kinematics("baxter_left", 0.0466)
    q = arm.posture.copy()
    here = arm.forward(q)
    # a reference 20 cm and 30 deg away: the servo asks for far more than 1 rad/s
    far = ControlOutput(here.translation + [0.2, 0.0, 0.0],
                        Rotation.from_matrix(here.rotation).as_quat(), "track", "press", 0.0,
                        0.0, np.zeros(6))
    unbounded = joint_velocity_command(far, arm, q, 4.0)
    assert np.max(np.abs(unbounded)) > 1.0
    bounded = joint_velocity_command(far, arm, q, 4.0, limit)
    assert np.max(np.abs(bounded)) == pytest.approx(1.0)
    # the same direction, only slower; and the robot node takes it
    np.testing.assert_allclose(bounded / np.linalg.norm(bounded),
                               unbounded / np.linalg.norm(unbounded), atol=1e-9)
    command = Command([0.0] * 3, [0, 0, 0, 1.0], [0.0] * 6, "track", "press", 0.0, 0.0,
                      bounded.tolist())
    assert velocity_problem(command, limit) == ""
