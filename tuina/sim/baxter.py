"""A Baxter left arm in the simulated world, driven as the real one is: through rosbridge.

The arm's MuJoCo bodies come from the same Baxter URDF the planner uses (example-robot-data,
through pinocchio): joint placements, limits and link inertias; capsules stand in for the
link meshes and a massage ball replaces the gripper fingers. Like the arm's own joint
controller, the simulated one compensates gravity and servoes each joint to a reference:
VELOCITY commands move the reference, POSITION commands move it towards a target at the
speed ratio, and a command older than the arm's command timeout holds where it is. A
disabled arm holds still.

Over rosbridge it publishes ``/robot/joint_states``, ``/robot/limb/left/endpoint_state``
(gripper pose and the contact wrench the arm applies) and ``/robot/state``, and takes
``/robot/limb/left/joint_command``, ``/robot/set_super_enable`` and
``/robot/limb/left/set_speed_ratio``.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import numpy as np

from tuina.operators.arms import BAXTER_LEFT_JOINTS, load_arm
from tuina.operators.geometry import matrix_to_quat

PREFIX = "baxter_"
GRIPPER_BODY = f"{PREFIX}left_gripper"
POSITION_MODE, VELOCITY_MODE = 1, 2  # baxter_core_msgs/JointCommand
COMMAND_TIMEOUT_S = 0.2  # the arm's joint_command_timeout
STATE_EVERY_STEPS = 10  # joint and endpoint states at 100 Hz of simulation time
ASSEMBLY_EVERY_STEPS = 50  # /robot/state at 20 Hz
REFERENCE_LEAD_RAD = 0.1  # how far the servo reference may run ahead of the joint
POSITION_GAIN = 4.0  # 1/s: POSITION mode approaches its target at this rate, then the limit
SERVO_KP = (900.0, 900.0, 700.0, 700.0, 250.0, 250.0, 150.0)  # Nm/rad
SERVO_KV = (40.0, 40.0, 25.0, 25.0, 6.0, 6.0, 3.0)  # Nm s/rad
LINK_RADII = (0.07, 0.065, 0.06, 0.055, 0.05, 0.045, 0.04)
GRIPPER_IN_WRIST_M = 0.2712  # left_gripper on the wrist (w2) axis
GRIPPER_BASE_IN_WRIST_M = 0.1386
PEDESTAL_HEIGHT_M = 0.93  # the base frame above the floor
LINK_RGBA = "0.72 0.1 0.1 1"  # Baxter red
JOINT_RGBA = "0.2 0.2 0.22 1"


def _fmt(v: Any) -> str:
    return " ".join(f"{x:.6g}" for x in np.ravel(v))


def add_baxter_left_arm(worldbody: ET.Element, actuators: ET.Element) -> ET.Element:
    """Append the Baxter's pedestal, torso and left arm at the world origin (= its base
    frame), with a position servo per joint; returns the gripper body to mount a tool on."""
    model, _, _ = load_arm("baxter_left")
    visual = {"contype": "0", "conaffinity": "0", "group": "1"}
    ET.SubElement(worldbody, "geom", name=f"{PREFIX}pedestal", type="cylinder",
                  pos=f"0 0 {-PEDESTAL_HEIGHT_M / 2}", size=f"0.12 {PEDESTAL_HEIGHT_M / 2}",
                  rgba=JOINT_RGBA, **visual)
    ET.SubElement(worldbody, "geom", name=f"{PREFIX}torso", type="box", pos="-0.05 0 0.3",
                  size="0.14 0.16 0.3", rgba=LINK_RGBA, **visual)
    parent = worldbody
    # arm links touch the phantom and the table, never each other
    link = {"contype": "1", "conaffinity": "2", "rgba": LINK_RGBA}
    for j in range(1, model.njoints):
        name = model.names[j]
        placement = model.jointPlacements[j]
        inertia = model.inertias[j]
        body = ET.SubElement(parent, "body", name=f"{PREFIX}{name}",
                             pos=_fmt(placement.translation),
                             quat=_fmt(np.roll(matrix_to_quat(placement.rotation), 1)),
                             gravcomp="1")
        inertia_matrix = inertia.inertia
        ET.SubElement(body, "inertial", pos=_fmt(inertia.lever), mass=f"{inertia.mass:.6g}",
                      fullinertia=_fmt(inertia_matrix[[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]]))
        ET.SubElement(body, "joint", name=f"{PREFIX}{name}", type="hinge", axis="0 0 1",
                      range=_fmt([model.lowerPositionLimit[j - 1],
                                  model.upperPositionLimit[j - 1]]),
                      armature="0.05" if j <= 4 else "0.01", damping="0.5")
        end = (model.jointPlacements[j + 1].translation if j + 1 < model.njoints
               else np.array([0.0, 0.0, GRIPPER_BASE_IN_WRIST_M]))
        radius = LINK_RADII[j - 1]
        ET.SubElement(body, "geom", name=f"{PREFIX}{name}_joint", type="cylinder",
                      pos="0 0 0", size=f"{radius} {radius * 0.9}", mass="0",
                      rgba=JOINT_RGBA, contype="1", conaffinity="2")
        if np.linalg.norm(end) > 1e-3:
            ET.SubElement(body, "geom", name=f"{PREFIX}{name}_link", type="capsule",
                          fromto=_fmt(np.concatenate([np.zeros(3), end])),
                          size=f"{radius * 0.8:.4g}", mass="0", **link)
        parent = body
    ET.SubElement(parent, "geom", name=f"{PREFIX}gripper_base", type="cylinder",
                  pos=f"0 0 {GRIPPER_BASE_IN_WRIST_M}", size="0.035 0.012", mass="0",
                  rgba=JOINT_RGBA, contype="1", conaffinity="2")
    gripper = ET.SubElement(parent, "body", name=GRIPPER_BODY,
                            pos=f"0 0 {GRIPPER_IN_WRIST_M}")
    ET.SubElement(gripper, "geom", name=f"{PREFIX}tool_stalk", type="capsule", size="0.012",
                  fromto=f"0 0 {GRIPPER_BASE_IN_WRIST_M - GRIPPER_IN_WRIST_M} 0 0 0",
                  mass="0", rgba="0.3 0.3 0.3 1", contype="1", conaffinity="2")
    for j, name in enumerate(BAXTER_LEFT_JOINTS):
        limit = model.effortLimit[j]
        ET.SubElement(actuators, "position", name=f"{PREFIX}{name}", joint=f"{PREFIX}{name}",
                      kp=f"{SERVO_KP[j]}", kv=f"{SERVO_KV[j]}", forcelimited="true",
                      forcerange=f"{-limit} {limit}", ctrlrange=_fmt([
                          model.lowerPositionLimit[j], model.upperPositionLimit[j]]))
    return gripper


# a ready pose: the tool 0.1 m above the table's near corner, pointing down, clear of the
# camera's view of the body (from baxter_interface's neutral pose the path to the legs
# passes a wrist singularity)
READY_Q = (0.35, -0.85, -0.08, 1.08, 0.06, 1.34, 1.06)


def initial_baxter_q() -> np.ndarray:
    """Where the simulated arm starts: READY_Q."""
    return np.array(READY_Q)


class SimulatedBaxter:
    """The arm's joint controller and its rosbridge topics, stepped by the world's physics.

    ``pre_step`` and ``post_step`` run on the physics thread at 1 kHz; commands arrive on the
    rosbridge thread and are handed over under a lock.
    """

    def __init__(self, initial_q: np.ndarray, host: str, port: int,
                 clock_s: Callable[[], float]):
        from tuina.sim.rosbridge import SimulatedRosbridge

        model, _, _ = load_arm("baxter_left")
        self.initial_q = np.asarray(initial_q, float)
        self.lower = model.lowerPositionLimit.copy()
        self.upper = model.upperPositionLimit.copy()
        self.velocity_limit = model.velocityLimit.copy()
        self.names = list(BAXTER_LEFT_JOINTS)
        self.clock_s = clock_s  # simulation time, for the command timeout
        self.bridge = SimulatedRosbridge(host, port, self._received)
        self._lock = threading.Lock()
        self.enabled = False  # a Baxter starts disabled: a client enables it
        self.speed_ratio = 0.3
        self._mode = 0
        self._command = np.zeros(7)
        self._command_at_s = -np.inf
        self.link_up = True
        self.rejected: list[str] = []  # commands the arm refused (wrong names or length)

    # --- set-up --------------------------------------------------------------------------
    def attach(self, mujoco: Any, model: Any, data: Any) -> None:
        """Find the arm in the compiled model and put it at its initial joints."""
        def jid(name: str) -> int:
            return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, f"{PREFIX}{name}")

        self._data = data
        self.qpos_addr = np.array([model.jnt_qposadr[jid(n)] for n in self.names])
        self.dof_addr = np.array([model.jnt_dofadr[jid(n)] for n in self.names])
        self.actuator = np.array([mujoco.mj_name2id(
            model, mujoco.mjtObj.mjOBJ_ACTUATOR, f"{PREFIX}{n}") for n in self.names])
        data.qpos[self.qpos_addr] = self.initial_q
        data.ctrl[self.actuator] = self.initial_q
        self.reference = self.initial_q.copy()

    def serve(self) -> None:
        """Start the rosbridge server (OSError when its port is taken)."""
        self.bridge.start()

    def close(self) -> None:
        self.bridge.close()

    # --- physics thread ------------------------------------------------------------------
    def q(self) -> np.ndarray:
        """Measured joint positions."""
        return self._data.qpos[self.qpos_addr].copy()

    def pre_step(self, time_s: float, dt: float) -> None:
        """Move the servo reference by the command in force now."""
        q = self._data.qpos[self.qpos_addr]
        with self._lock:
            mode, command, at_s = self._mode, self._command, self._command_at_s
            enabled, ratio = self.enabled, self.speed_ratio
        if not enabled or time_s - at_s > COMMAND_TIMEOUT_S:
            velocity = np.zeros(7)
        elif mode == VELOCITY_MODE:
            velocity = np.clip(command, -self.velocity_limit, self.velocity_limit)
        else:  # POSITION: towards the target, at most the speed ratio of each joint's limit
            limit = ratio * self.velocity_limit
            velocity = np.clip(POSITION_GAIN * (command - self.reference), -limit, limit)
        reference = np.clip(self.reference + velocity * dt, q - REFERENCE_LEAD_RAD,
                            q + REFERENCE_LEAD_RAD)
        self.reference = np.clip(reference, self.lower, self.upper)
        self._data.ctrl[self.actuator] = self.reference

    def publish_state(self, steps: int, stamp_ns: int, base_T_gripper: np.ndarray,
                      wrench: np.ndarray) -> None:
        """Publish the arm's states at their rates of simulation time (physics thread)."""
        if not self.link_up or steps % STATE_EVERY_STEPS:
            return
        d = self._data
        header = {"stamp": {"secs": stamp_ns // 1_000_000_000,
                            "nsecs": stamp_ns % 1_000_000_000}, "frame_id": "base"}
        # what the motors apply: the servo torque plus the gravity it carries
        effort = d.qfrc_actuator[self.dof_addr] + d.qfrc_gravcomp[self.dof_addr]
        self.bridge.publish("/robot/joint_states", {
            "header": header, "name": self.names,
            "position": d.qpos[self.qpos_addr].tolist(),
            "velocity": d.qvel[self.dof_addr].tolist(), "effort": effort.tolist()})
        p, quat = base_T_gripper[:3, 3], matrix_to_quat(base_T_gripper[:3, :3])
        xyz = ("x", "y", "z")
        self.bridge.publish("/robot/limb/left/endpoint_state", {
            "header": header,
            "pose": {"position": dict(zip(xyz, p.tolist(), strict=True)),
                     "orientation": dict(zip(("x", "y", "z", "w"), quat.tolist(),
                                             strict=True))},
            "twist": {"linear": dict.fromkeys(xyz, 0.0), "angular": dict.fromkeys(xyz, 0.0)},
            "wrench": {"force": dict(zip(xyz, wrench[:3].tolist(), strict=True)),
                       "torque": dict(zip(xyz, wrench[3:].tolist(), strict=True))}})
        if steps % ASSEMBLY_EVERY_STEPS == 0:
            with self._lock:
                enabled = self.enabled
            self.bridge.publish("/robot/state", {
                "enabled": enabled, "stopped": False, "error": False, "estop_button": 0,
                "estop_source": 0})

    # --- in-process commands (calibration) and rosbridge commands ------------------------
    def command(self, mode: int, values: np.ndarray, time_s: float) -> None:
        """Take a joint command as the arm would from ``joint_command``."""
        with self._lock:
            self._mode, self._command, self._command_at_s = mode, np.asarray(values, float), \
                time_s

    def _received(self, topic: str, msg: dict[str, Any]) -> None:
        if not self.link_up:
            return
        if topic == "/robot/limb/left/joint_command":
            names, values = list(msg.get("names", [])), list(msg.get("command", []))
            if sorted(names) != sorted(self.names) or len(values) != len(names) \
                    or msg.get("mode") not in (POSITION_MODE, VELOCITY_MODE):
                self.rejected.append(f"mode {msg.get('mode')}, names {names}")
                return
            by_name = dict(zip(names, values, strict=True))
            ordered = np.array([float(by_name[n]) for n in self.names])
            if np.all(np.isfinite(ordered)):
                self.command(int(msg["mode"]), ordered, self.clock_s())
        elif topic == "/robot/set_super_enable":
            with self._lock:
                self.enabled = bool(msg.get("data"))
                self._command_at_s = -np.inf  # enabling never resumes an old command
        elif topic == "/robot/limb/left/set_speed_ratio":
            ratio = float(msg.get("data", self.speed_ratio))
            if 0.0 < ratio <= 1.0:
                with self._lock:
                    self.speed_ratio = ratio
