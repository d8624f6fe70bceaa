"""The simulated massage world: a robot arm plus table, phantom, tool, camera, in MuJoCo.

The arm is franky-sim's FR3, served over the libfranka protocol franky connects to, or a
Baxter left arm served over rosbridge (``tuina.sim.baxter``). One process holds the physics
(1 kHz, paced to real time on absolute deadlines), the arm's server, and a headless RGB-D
renderer that draws from its own MjData snapshot so frames are never torn.
"""

from __future__ import annotations

import os
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from tuina.operators.geometry import (
    make_transform,
    matrix_to_quat,
    quat_to_matrix,
    transform_points,
)
from tuina.operators.motion import BodyMotionScript, body_offset
from tuina.operators.phantom import CAPSULES, HEAD, POINT_SIDES, TRUNK, placement
from tuina.operators.sensor import BAXTER_WRENCH, FR3_WRENCH, IDEAL_WRENCH, WrenchSensor
from tuina.sim.person import Person, seeded_person

# read by mujoco at import: headless EGL unless the graph's env says otherwise
os.environ.setdefault("MUJOCO_GL", "egl")

GL_HINT = ("headless rendering failed: set MUJOCO_GL=egl (Debian: apt-get install libegl1 "
           "libegl-mesa0) or MUJOCO_GL=osmesa (apt-get install libosmesa6)")
TISSUE_SOLREF = "0.1 1"
TISSUE_SOLIMP = "0.2 0.5 0.02"
# massage ball: centre 26.6 mm past the end-effector frame (franky's EE on the Franka hand,
# the gripper endpoint on a Baxter), so the contact point lies TOOL_LENGTH_M past it
BALL_RADIUS_M = 0.02
BALL_CENTRE_IN_EE_M = 0.0266
TOOL_LENGTH_M = BALL_CENTRE_IN_EE_M + BALL_RADIUS_M
HAND_TO_EE_M = 0.1034  # the Franka hand's frame to franky's EE frame (same axes)
# calibration marker: a green ball on a stalk beside the tool (EE axes)
MARKER_RADIUS_M = 0.015
MARKER_IN_EE_M = (0.09, 0.0, 0.03 - HAND_TO_EE_M)
MARKER_RGBA = "0.1 0.85 0.2 1"
ROBOTS = ("fr3", "baxter_left")
FR3_INITIAL_Q = (0.0, -0.7, 0.0, -2.6, 0.0, 1.9, 0.785)


SERVE_WAIT_S = 10.0  # how long a taken libfranka port is tried again


class RenderingUnavailable(RuntimeError):
    """No GL context for headless rendering."""


@dataclass
class WorldConfig:
    """Everything that shapes the world."""

    robot: str = "fr3"  # one of ROBOTS
    hostname: str = "127.0.0.1"  # where the arm's server listens
    rosbridge_port: int = 9090  # the Baxter's rosbridge server (0: any free port)
    table_position: tuple[float, float, float] = (0.5, 0.05, 0.0)  # centre x, y; top z
    body: str = "phantom"  # one of BODIES: the capsule phantom or a seeded person
    person_seed: int = 0  # which person lies on the table (body "person")
    posture: str = "supine"  # how the person lies (the phantom is the same either way)
    body_position: tuple[float, float, float] = (0.55, 0.2, 0.0)  # where it is expected
    body_yaw_deg: float = 90.0
    # where it lies: a seeded offset of up to these from the expected pose (0, 0: on it)
    body_offset_seed: int = 1
    body_offset_mm: float = 50.0
    body_offset_deg: float = 15.0
    camera_position: tuple[float, float, float] = (0.55, -0.08, 1.05)
    camera_target: tuple[float, float, float] = (0.55, -0.08, 0.0)
    camera_up: tuple[float, float, float] = (1.0, 0.0, 0.0)  # image up, projected
    # how the real mount differs from the drawing, in the camera frame: mm, then xyz deg
    camera_mount_error: tuple[float, ...] = (4.0, -3.0, 5.0, 0.8, -0.6, 0.4)
    camera_fovy_deg: float = 58.0
    # the factory calibration camera_info reports minus the true one: fx %, fy %, cx px, cy px
    intrinsics_error: tuple[float, ...] = (0.2, 0.2, 0.5, -0.4)
    calibration_marker: bool = False
    marker_mount_error_mm: tuple[float, ...] = (1.0, -0.8, 0.6)  # true minus nominal (EE axes)
    width: int = 640
    height: int = 480
    motion: BodyMotionScript = field(default_factory=BodyMotionScript)
    initial_q: tuple[float, ...] | None = None  # None: the arm's own start pose
    robot_link_drop_s: float = 0.0  # sim time the robot's network link goes silent; 0: never
    fault: str = "none"  # a drill injected after the first contact: one of FAULTS
    fault_after_contact_s: float = 1.5
    truth_log: str = ""  # write the true contact force and end-effector track here (.npz)
    wrench_sensor: str = "arm"  # one of WRENCH_SENSORS: the arm's estimate, or the truth
    wrench_seed: int = 0


WRENCH_SENSORS = ("arm", "ideal")
BODIES = ("phantom", "person")
FAULTS = ("none", "wrench_nan", "wrench_zero", "wrench_spike", "wrench_bias", "camera_freeze",
          "depth_nan", "link_drop")
# +20 N for 15 ms: one or two of a 100 Hz reader's states whatever its phase (10 ms could fall
# between two of them and never be seen); a +5 N bias step
SPIKE_N, SPIKE_S, BIAS_N = 20.0, 0.015, 5.0


@dataclass
class Frame:
    """One rendered frame with the truth at the same simulation instant."""

    stamp_ns: int
    rgb: np.ndarray
    depth: np.ndarray  # float32 metres, z-depth
    base_T_body: np.ndarray


def body_offset_drawn(seed: int, offset_mm: float, offset_deg: float) -> tuple[float, ...]:
    """The placement offset a seed draws: dx, dy (m) and yaw (deg), uniform within the
    bounds."""
    rng = np.random.default_rng([seed, 19])
    dx, dy = rng.uniform(-1.0, 1.0, 2) * offset_mm * 1e-3
    return float(dx), float(dy), float(rng.uniform(-1.0, 1.0) * offset_deg)


def nominal_base_T_body(cfg: WorldConfig) -> np.ndarray:
    """Where the phantom lies before any scripted motion: the expected pose moved by the
    seeded offset (turned about the pelvis)."""
    dx, dy, dyaw = body_offset_drawn(cfg.body_offset_seed, cfg.body_offset_mm,
                                     cfg.body_offset_deg)
    x, y, z = cfg.body_position
    return placement((x + dx, y + dy, z), cfg.body_yaw_deg + dyaw)


def nominal_base_T_camera(cfg: WorldConfig) -> np.ndarray:
    """Camera pose as drawn (OpenCV optical frame: z forward, y down) from position, target, up."""
    position = np.asarray(cfg.camera_position, float)
    z = np.asarray(cfg.camera_target, float) - position
    z /= np.linalg.norm(z)
    up = np.asarray(cfg.camera_up, float)
    y = -(up - (up @ z) * z)
    if np.linalg.norm(y) < 1e-6:
        raise ValueError("camera_up is parallel to the viewing direction; choose another")
    y /= np.linalg.norm(y)
    return make_transform(np.stack([np.cross(y, z), y, z], axis=1), position)


def true_base_T_camera(cfg: WorldConfig) -> np.ndarray:
    """Where the camera really is: the drawing composed with the mount error."""
    e = cfg.camera_mount_error
    error = make_transform(Rotation.from_euler("xyz", e[3:], degrees=True).as_matrix(),
                           np.asarray(e[:3]) * 1e-3)
    return nominal_base_T_camera(cfg) @ error


def true_intrinsics(cfg: WorldConfig) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy of the rendered camera (pixel centres at integer coordinates)."""
    f = (cfg.height / 2.0) / np.tan(np.radians(cfg.camera_fovy_deg) / 2.0)
    return f, f, (cfg.width - 1) / 2.0, (cfg.height - 1) / 2.0


def reported_intrinsics(cfg: WorldConfig) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy as the camera reports them: its factory calibration, off the rendered
    camera's by ``intrinsics_error``."""
    fx, fy, cx, cy = true_intrinsics(cfg)
    e = cfg.intrinsics_error
    return fx * (1 + e[0] / 100), fy * (1 + e[1] / 100), cx + e[2], cy + e[3]


def _fmt(v) -> str:
    return " ".join(f"{x:.6g}" for x in v)


def start_q(cfg: WorldConfig) -> np.ndarray:
    """The arm's joints at the start."""
    if cfg.initial_q is not None:
        return np.asarray(cfg.initial_q, float)
    if cfg.robot == "baxter_left":
        from tuina.sim.baxter import initial_baxter_q

        return initial_baxter_q()
    return np.asarray(FR3_INITIAL_Q, float)


def add_person_geoms(asset: ET.Element, body: ET.Element, person: Person,
                     tissue: dict[str, str]) -> None:
    """Add the person to an MJCF ``asset`` and mocap ``body`` (ElementTree elements): the skin,
    drawn for the camera and touching nothing, and the collision patches (convex slabs under
    the skin, geom group 3, which the camera does not draw) with the ``tissue`` attributes."""
    ET.SubElement(asset, "mesh", name="skin", vertex=_fmt(person.vertices.ravel()),
                  face=" ".join(map(str, person.faces.ravel())), inertia="shell")
    ET.SubElement(body, "geom", name="skin", type="mesh", mesh="skin", material="skin",
                  contype="0", conaffinity="0", group="0")
    for k, points in enumerate(person.patches):
        ET.SubElement(asset, "mesh", name=f"skin_patch_{k}", vertex=_fmt(points.ravel()))
        ET.SubElement(body, "geom", name=f"skin_patch_{k}", type="mesh",
                      mesh=f"skin_patch_{k}", group="3", **tissue)


def body_labels(cfg: WorldConfig, person: Person | None = None
                ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The world's acupoint labels in the body frame: codes, positions, outward normals (the
    person's, or the phantom's atlas)."""
    if cfg.body == "person":
        person = person if person is not None else seeded_person(cfg.person_seed, cfg.posture)
        return list(person.codes), person.positions, person.normals
    return ([a.code for a in POINT_SIDES], np.array([a.position for a in POINT_SIDES]),
            np.array([a.normal for a in POINT_SIDES]))


def _add_scene(sim, cfg: WorldConfig, tool_parent: ET.Element,
               person: Person | None = None) -> None:
    scene, wb = sim.scene, sim.worldbody
    # software GL: no shadows, no multisampling (115 ms -> ~25 ms a frame)
    for q in scene.iter("quality"):
        q.set("offsamples", "0")
        q.set("shadowsize", "0")
    for light in scene.iter("light"):
        light.set("castshadow", "false")
    asset = scene.find("asset")
    ET.SubElement(asset, "material", name="skin", rgba="0.87 0.68 0.58 1", specular="0.1")
    ET.SubElement(asset, "material", name="table", rgba="0.55 0.6 0.65 1")
    x, y, top = cfg.table_position
    ET.SubElement(wb, "geom", name="table", type="box", pos=_fmt((x, y, top - 0.03)),
                  size="0.35 1.05 0.03", material="table")
    ET.SubElement(wb, "geom", name="table_leg", type="box", pos=_fmt((x, y, top - 0.4)),
                  size="0.3 0.9 0.34", material="table")
    T = nominal_base_T_body(cfg)
    quat_wxyz = np.roll(matrix_to_quat(T[:3, :3]), 1)
    body = ET.SubElement(wb, "body", name="phantom", mocap="true", pos=_fmt(T[:3, 3]),
                         quat=_fmt(quat_wxyz))
    tissue = {"material": "skin", "solref": TISSUE_SOLREF, "solimp": TISSUE_SOLIMP,
              "contype": "2", "conaffinity": "1"}
    if person is not None:
        add_person_geoms(asset, body, person, tissue)
    else:
        for seg in CAPSULES:
            ET.SubElement(body, "geom", name=seg.name, type="capsule",
                          fromto=_fmt(seg.a + seg.b), size=f"{seg.radius}", **tissue)
        ET.SubElement(body, "geom", name=TRUNK.name, type="ellipsoid", pos=_fmt(TRUNK.center),
                      size=_fmt(TRUNK.radii), **tissue)
        ET.SubElement(body, "geom", name=HEAD[0], type="sphere", pos=_fmt(HEAD[1]),
                      size=f"{HEAD[2]}", **tissue)
    # the tool parent's frame has the EE's axes, its origin ``ee_z`` before the EE
    ee_z = HAND_TO_EE_M if cfg.robot == "fr3" else 0.0
    ET.SubElement(tool_parent, "geom", name="massage_ball", type="sphere",
                  pos=f"0 0 {ee_z + BALL_CENTRE_IN_EE_M}", size=f"{BALL_RADIUS_M}",
                  rgba="0.2 0.35 0.8 1", friction="0.3 0.005 0.0001")
    if cfg.calibration_marker:
        marker = np.asarray(MARKER_IN_EE_M) + [0.0, 0.0, ee_z] + np.multiply(
            cfg.marker_mount_error_mm, 1e-3)
        visual = {"contype": "0", "conaffinity": "0", "mass": "0.001"}
        ET.SubElement(tool_parent, "geom", name="marker_stalk", type="capsule", size="0.004",
                      fromto=_fmt([0.025, marker[1], marker[2],
                                   marker[0] - MARKER_RADIUS_M, marker[1], marker[2]]),
                      rgba="0.3 0.3 0.3 1", **visual)
        ET.SubElement(tool_parent, "geom", name="calibration_marker", type="sphere",
                      pos=_fmt(marker), size=f"{MARKER_RADIUS_M}", rgba=MARKER_RGBA, **visual)
    cam = true_base_T_camera(cfg)
    # MuJoCo cameras look along -z with y up: OpenCV axes are (x, -y, -z)
    ET.SubElement(wb, "camera", name="d455", pos=_fmt(cam[:3, 3]),
                  xyaxes=_fmt(np.concatenate([cam[:3, 0], -cam[:3, 1]])),
                  fovy=f"{cfg.camera_fovy_deg}")


def _hold_where_it_stands(server, robot) -> None:
    """franky-sim 1.0.4 holds the *desired* joints when a motion stops, which under
    Cartesian impedance lie where the last reference was (inside the body while pressing);
    an FR3 holds where it stands."""
    stop = server.stop_motion

    def stop_motion(send_preemption_signal: bool = True) -> None:
        stop(send_preemption_signal)
        server._FrankaRobotServer__holding_q = tuple(robot.inner_state.q)

    server.stop_motion = stop_motion


def rgb_and_depth(renderer: Any, model: Any, data: Any, camera: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The colour image and metric depth (m, float32) of one raster of the scene.

    ``mujoco.Renderer`` draws the scene once per image it returns; on a CPU rasteriser that
    second drawing is 40 % of a frame (38 -> 23 ms at 640x480 here). This reads both buffers
    of one drawing through the renderer's context and unprojects depth as the renderer does
    (reversed Z, in float64): the same pixels and depths, bit for bit, as its two passes
    (``tests/test_nodes.py``; mujoco is pinned, as this reads the renderer's context)."""
    import mujoco

    renderer.disable_depth_rendering()
    renderer.update_scene(data, camera=camera)
    height, width = renderer.height, renderer.width
    rgb = np.empty((height, width, 3), np.uint8)
    ndc = np.empty((height, width), np.float32)
    if renderer._gl_context:
        renderer._gl_context.make_current()
    mujoco.mjr_render(renderer._rect, renderer._scene, renderer._mjr_context)
    mujoco.mjr_readPixels(rgb, ndc, renderer._rect, renderer._mjr_context)
    extent = model.stat.extent
    far, near = np.float32(model.vis.map.zfar * extent), np.float32(model.vis.map.znear * extent)
    c = np.float32(-0.5) * (-(far + near) / (far - near)) - np.float32(0.5)
    d = np.float32(-0.5) * (-(np.float32(2) * far * near) / (far - near))
    depth = (d / (ndc.astype(np.float64) + c)).astype(np.float32)
    return np.flipud(rgb).copy(), np.flipud(depth).copy()


class MassageWorld:
    """The running world. Use as a context manager; physics runs in a paced thread."""

    def __init__(self, cfg: WorldConfig):
        import mujoco
        from franky_sim.mujoco_simulator import MujocoSimulator

        if cfg.robot not in ROBOTS:
            raise ValueError(f"unknown robot {cfg.robot!r}; choose one of {', '.join(ROBOTS)}")
        if cfg.body not in BODIES:
            raise ValueError(f"unknown body {cfg.body!r}; choose one of {', '.join(BODIES)}")
        self.cfg = cfg
        self._mujoco = mujoco
        self._wrench_base = np.zeros(6)
        self._base_T_ee = np.eye(4)
        self.sim = MujocoSimulator()
        self.robot = self.server = self.baxter = None
        if cfg.robot == "fr3":
            tool_parent = self._add_fr3()
            self._robot_prefix, self._ee_body, self._ee_in_body = "robot0_", "robot0_hand", \
                HAND_TO_EE_M
        else:
            from tuina.sim.baxter import (
                GRIPPER_BODY,
                PEDESTAL_HEIGHT_M,
                PREFIX,
                SimulatedBaxter,
                add_baxter_left_arm,
            )

            tool_parent = add_baxter_left_arm(self.sim.worldbody, self.sim.scene.find("actuator"))
            for ground in self.sim.worldbody.iter("geom"):
                if ground.get("name") == "ground":  # the base frame stands on a pedestal
                    ground.set("pos", f"0 0 {-PEDESTAL_HEIGHT_M}")
            self.baxter = SimulatedBaxter(start_q(cfg), cfg.hostname, cfg.rosbridge_port,
                                          lambda: self.time_s)
            self._robot_prefix, self._ee_body, self._ee_in_body = PREFIX, GRIPPER_BODY, 0.0
        self.person = seeded_person(cfg.person_seed, cfg.posture) \
            if cfg.body == "person" else None
        self._labels = body_labels(cfg, self.person)
        _add_scene(self.sim, cfg, tool_parent, self.person)
        self._lock = threading.Lock()
        self._running = False
        self._thread: threading.Thread | None = None
        self._steps = 0
        self._contact_force = np.zeros(3)
        self._contact_point = np.full(3, np.nan)
        self._max_force = 0.0
        self._first_contact_s: float | None = None
        self._nominal = nominal_base_T_body(cfg)
        self.renderer = None
        self.link_drop_s = cfg.robot_link_drop_s
        self.fault_s: float | None = None  # sim time the drill's fault began
        self._bias_dir = np.array([0.0, 0.0, -1.0])
        self._track: list[tuple[float, ...]] = []
        if cfg.wrench_sensor not in WRENCH_SENSORS:
            raise ValueError(f"unknown wrench sensor {cfg.wrench_sensor!r}; choose one of "
                             f"{', '.join(WRENCH_SENSORS)}")
        noise = IDEAL_WRENCH if cfg.wrench_sensor == "ideal" else \
            FR3_WRENCH if cfg.robot == "fr3" else BAXTER_WRENCH
        self._sensor = WrenchSensor(noise, np.random.default_rng([cfg.wrench_seed, 7]))
        self._sensed = np.zeros(6)
        self._sigma_min = np.inf

    def _add_fr3(self) -> ET.Element:
        """franky-sim's FR3, its state reporting the contact wrench; returns its hand."""
        from franky_sim import SimulationServer
        from franky_sim.mujoco_simulator import FrankaMujocoRobot

        world = self
        initial_q = tuple(start_q(self.cfg))

        class ContactSensingRobot(FrankaMujocoRobot):
            """FR3 whose state reports the contact wrench, as a real arm estimates it."""

            @property
            def state(self):
                s = super().state
                f = world.reported_wrench()
                T = world._base_T_ee.copy()
                k = np.concatenate([T[:3, :3].T @ f[:3], T[:3, :3].T @ f[3:]])
                # franky-sim 1.0.4 reports the desired pose as O_T_EE (its FK result
                # aliases the one of q_d): report the measured one, column-major
                return s.replace(O_F_ext_hat_K=tuple(f), K_F_ext_hat_K=tuple(k),
                                 O_T_EE=tuple(T.ravel(order="F").tolist()))

        self.sim.add_robot(initial_q=initial_q, initial_hand_width=0.0)
        # franky-sim builds its own robot object; swap in the one that senses contact
        self.robot = ContactSensingRobot(initial_q=initial_q, initial_hand_width=0.0)
        self.sim._robots[-1] = self.robot
        self.server = SimulationServer(self.sim, hostname_candidates=[self.cfg.hostname])
        return next(b for b in self.sim.worldbody.iter("body") if b.get("name") == "robot0_hand")

    # --- lifecycle -------------------------------------------------------------------
    def _serve(self, wait_s: float = SERVE_WAIT_S) -> None:
        """Bind the arm's libfranka ports; a world that just ended may hold them a moment
        longer (its process still exiting), so a taken port is tried again for ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.server.init()
                return
            except OSError as err:
                if time.monotonic() >= deadline:
                    raise OSError(f"the simulated FR3's ports on {self.cfg.hostname} stayed "
                                  f"taken for {wait_s:g} s ({err}): another simulated world "
                                  "runs on this machine; stop it, or give this one another "
                                  "loopback address (FRANKA_HOSTNAME)") from err
                time.sleep(0.25)

    def __enter__(self) -> MassageWorld:
        self.sim.init()
        if self.server is not None:
            self._serve()
            for rs in self.server.robot_servers:
                _hold_where_it_stands(rs, self.robot)
        else:
            self.sim.start()
        m = self.sim.model
        mj = self._mujoco
        self.model = m
        self.data = self.sim.data
        body_ids = {mj.mj_name2id(m, mj.mjtObj.mjOBJ_BODY, "phantom")}
        self._phantom_geoms = {g for g in range(m.ngeom) if m.geom_bodyid[g] in body_ids}
        self._robot_geoms = {g for g in range(m.ngeom) if (mj.mj_id2name(
            m, mj.mjtObj.mjOBJ_BODY, int(m.geom_bodyid[g])) or "").startswith(self._robot_prefix)}
        self._mocap_id = int(m.body_mocapid[mj.mj_name2id(m, mj.mjtObj.mjOBJ_BODY, "phantom")])
        self._ee_id = mj.mj_name2id(m, mj.mjtObj.mjOBJ_BODY, self._ee_body)
        if self.baxter is not None:
            self.baxter.attach(mj, m, self.data)
            mj.mj_forward(m, self.data)
            self._arm_qpos = self.baxter.qpos_addr
        else:
            self._arm_qpos = np.array(self.robot._qpos_addrs)
        self._cam_id = mj.mj_name2id(m, mj.mjtObj.mjOBJ_CAMERA, "d455")
        arm_joints = [j for j in range(m.njnt) if m.jnt_qposadr[j] in set(self._arm_qpos)]
        self._arm_dofs = np.array([m.jnt_dofadr[j] for j in arm_joints])
        self._jac = np.zeros((6, m.nv))
        self.sim.register_pre_step_callback(lambda _s: self._pre_step())
        self.sim.register_post_step_callback(lambda _s: self._post_step())
        self._render_data = mj.MjData(m)
        # the renderer is created before physics starts: creation stalls the process
        try:
            self.renderer = mj.Renderer(m, self.cfg.height, self.cfg.width)
        except Exception as err:  # mujoco raises plain Exceptions for GL failures
            raise RenderingUnavailable(f"{GL_HINT} ({err})") from None
        self._snapshot()
        if self.baxter is not None:
            try:
                self.baxter.serve()
            except OSError:
                self.renderer.close()
                self.sim.cleanup()
                raise
        self._running = True
        self._thread = threading.Thread(target=self._run, name="physics", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self.cfg.truth_log:
            track = np.array(self._track, float).reshape(-1, 8)
            tmp = self.cfg.truth_log + ".tmp.npz"
            np.savez(tmp, t=track[:, 0], wall=track[:, 1], force=track[:, 2:5],
                     ee=track[:, 5:8], fault=self.cfg.fault,
                     fault_s=np.nan if self.fault_s is None else self.fault_s,
                     first_contact_s=np.nan if self._first_contact_s is None
                     else self._first_contact_s)
            os.replace(tmp, self.cfg.truth_log)
        if self.renderer is not None:
            self.renderer.close()
        if self.server is not None:
            self.server.cleanup()
        else:
            self.baxter.close()
            self.sim.cleanup()

    def _run(self) -> None:
        deadline = time.perf_counter()
        servers = self.server.robot_servers if self.server is not None else []
        dropped = False
        while self._running:
            link_up = self.link_drop_s <= 0 or self.time_s < self.link_drop_s
            if link_up:
                for rs in servers:
                    rs.process_commands()
            elif self.baxter is not None:
                self.baxter.link_up = False
            else:
                # an FR3 that loses its client stops the motion and holds where it stands;
                # its own 1 kHz controller goes on without the network
                for rs in servers:
                    if not dropped:
                        rs.stop_motion(send_preemption_signal=False)
                    rs._pre_process_commands()
                    rs._post_process_commands()
                dropped = True
            with self._lock:
                self.sim.step()
            if link_up:
                for rs in servers:
                    rs.send_state()
            deadline += 0.001
            delay = deadline - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.05:  # fell far behind (start-up, GC): do not sprint to catch up
                deadline = time.perf_counter()

    # --- per-step hooks ------------------------------------------------------------------
    @property
    def time_s(self) -> float:
        return self._steps * 0.001

    @property
    def stamp_ns(self) -> int:
        return self._steps * 1_000_000

    def fault_active(self) -> bool:
        """The drill's fault has begun (FAULT_AFTER_CONTACT_S after the first contact)."""
        if self.cfg.fault == "none" or self._first_contact_s is None:
            return False
        if self.fault_s is None and \
                self.time_s >= self._first_contact_s + self.cfg.fault_after_contact_s:
            self.fault_s = self.time_s
            f = self._wrench_base[:3]
            if np.linalg.norm(f) > 1e-6:
                self._bias_dir = f / np.linalg.norm(f)
            if self.cfg.fault == "link_drop":
                self.link_drop_s = self.time_s
        return self.fault_s is not None

    def reported_wrench(self) -> np.ndarray:
        """The wrench the arm reports: its estimate of the contact's (the sensor model),
        changed by a sensor drill once it is on."""
        f = self._sensed.copy()
        if not self.cfg.fault.startswith("wrench") or not self.fault_active():
            return f
        kind = self.cfg.fault
        if kind == "wrench_nan":
            return np.full(6, np.nan)
        if kind == "wrench_zero":
            return np.zeros(6)
        if kind == "wrench_spike" and self.time_s - self.fault_s < SPIKE_S:
            f[:3] += SPIKE_N * self._bias_dir
        if kind == "wrench_bias":
            f[:3] += BIAS_N * self._bias_dir
        return f

    def _pre_step(self) -> None:
        if self.baxter is not None:
            self.baxter.pre_step(self.time_s, self.model.opt.timestep)
        # the 1 kHz hot path: a body that never moves keeps its mocap pose from the XML
        motion = self.cfg.motion
        if motion.kind == "none":
            return
        if motion.trigger == "contact":
            if self._first_contact_s is None:
                return
            t = self.time_s - self._first_contact_s
        else:
            t = self.time_s
        T = self._nominal @ body_offset(motion, t)
        self.data.mocap_pos[self._mocap_id] = T[:3, 3]
        self.data.mocap_quat[self._mocap_id] = np.roll(matrix_to_quat(T[:3, :3]), 1)

    def _post_step(self) -> None:
        mj, m, d = self._mujoco, self.model, self.data
        force = np.zeros(3)
        weighted = np.zeros(3)
        weight = 0.0
        c6 = np.zeros(6)
        for i in range(d.ncon):
            c = d.contact[i]
            g1, g2 = int(c.geom1), int(c.geom2)
            if g1 in self._robot_geoms and g2 in self._phantom_geoms:
                sign = 1.0
            elif g2 in self._robot_geoms and g1 in self._phantom_geoms:
                sign = -1.0
            else:
                continue
            mj.mj_contactForce(m, d, i, c6)
            # contact frame: first axis is the normal from geom1 to geom2; rotated to the
            # world, c6[:3] is the force geom1 exerts on geom2 (checked by pressing down)
            force += sign * (c.frame.reshape(3, 3).T @ c6[:3])
            weighted += c6[0] * c.pos
            weight += c6[0]
        self._contact_force = force
        if self._first_contact_s is None and force @ force > 1.0:
            self._first_contact_s = self.time_s
        self._max_force = max(self._max_force, float(np.linalg.norm(force)))
        self._contact_point = weighted / weight if weight > 1e-6 else np.full(3, np.nan)
        self._wrench_base = np.concatenate([force, np.zeros(3)])
        if self._sensor.params.singular_sigma > 0 and self._steps % 10 == 0:
            mj.mj_jacBody(m, d, self._jac[:3], self._jac[3:], self._ee_id)
            self._sigma_min = float(np.linalg.svd(self._jac[:, self._arm_dofs],
                                                  compute_uv=False)[-1])
        self._sensed = self._sensor.step(self._wrench_base, m.opt.timestep, self._sigma_min)
        R = d.xmat[self._ee_id].reshape(3, 3)
        ee = np.eye(4)
        ee[:3, :3] = R
        ee[:3, 3] = d.xpos[self._ee_id] + R[:, 2] * self._ee_in_body
        self._base_T_ee = ee
        self._steps += 1
        if self.cfg.truth_log and self._steps % 2 == 0:
            self._track.append((self.time_s, time.time(), *force, *ee[:3, 3]))
        if self.cfg.fault != "none":
            self.fault_active()
        if self.baxter is not None:
            self.baxter.publish_state(self._steps, self.stamp_ns, ee, self.reported_wrench())

    def _snapshot(self) -> tuple[int, np.ndarray]:
        mj, d, r = self._mujoco, self.data, self._render_data
        with self._lock:
            r.qpos[:] = d.qpos
            r.mocap_pos[:] = d.mocap_pos
            r.mocap_quat[:] = d.mocap_quat
            stamp = self.stamp_ns
        mj.mj_kinematics(self.model, r)
        mj.mj_camlight(self.model, r)
        T = np.eye(4)
        T[:3, :3] = quat_to_matrix(np.roll(r.mocap_quat[self._mocap_id], -1))
        T[:3, 3] = r.mocap_pos[self._mocap_id]
        return stamp, T

    # --- outputs -----------------------------------------------------------------------
    def render(self, rgb: bool = True) -> Frame:
        """Render depth (and RGB unless told not to) of one consistent simulation instant."""
        stamp, base_T_body = self._snapshot()
        r = self.renderer
        if rgb:
            image, depth = rgb_and_depth(r, self.model, self._render_data, "d455")
            return Frame(stamp, image, depth, base_T_body)
        r.enable_depth_rendering()
        r.update_scene(self._render_data, camera="d455")
        depth = r.render().astype(np.float32)
        r.disable_depth_rendering()
        return Frame(stamp, np.zeros((0, 0, 3), np.uint8), depth, base_T_body)

    def render_posed(self, q: np.ndarray, base_T_body: np.ndarray, stamp_ns: int = 0) -> Frame:
        """Render the scene with the arm at joints ``q`` and the phantom at ``base_T_body``,
        whatever the physics is doing (evaluations pose the scene frame by frame)."""
        mj, r = self._mujoco, self._render_data
        with self._lock:
            r.qpos[:] = self.data.qpos
            r.mocap_pos[:] = self.data.mocap_pos
            r.mocap_quat[:] = self.data.mocap_quat
        r.qpos[self._arm_qpos] = q
        r.mocap_pos[self._mocap_id] = base_T_body[:3, 3]
        r.mocap_quat[self._mocap_id] = np.roll(matrix_to_quat(base_T_body[:3, :3]), 1)
        mj.mj_kinematics(self.model, r)
        mj.mj_camlight(self.model, r)
        self.renderer.enable_depth_rendering()
        self.renderer.update_scene(r, camera="d455")
        depth = self.renderer.render().astype(np.float32)
        self.renderer.disable_depth_rendering()
        return Frame(stamp_ns, np.zeros((0, 0, 3), np.uint8), depth, base_T_body)

    def render_scene(self, q: np.ndarray, base_T_body: np.ndarray, base_T_camera: np.ndarray,
                     light: float = 1.0) -> Frame:
        """RGB and depth with the arm at ``q``, the phantom at ``base_T_body``, the camera's
        optical frame at ``base_T_camera`` and the lights scaled by ``light``, for labelled
        image sets (the physics is not touched; the camera and lights are put back)."""
        m = self.model
        saved = (m.cam_pos[self._cam_id].copy(), m.cam_quat[self._cam_id].copy(),
                 m.light_diffuse.copy(), m.light_ambient.copy(),
                 m.vis.headlight.diffuse.copy(), m.vis.headlight.ambient.copy())
        # MuJoCo cameras look along -z with y up: OpenCV axes are (x, -y, -z)
        m.cam_pos[self._cam_id] = base_T_camera[:3, 3]
        m.cam_quat[self._cam_id] = np.roll(matrix_to_quat(
            base_T_camera[:3, :3] @ np.diag([1.0, -1.0, -1.0])), 1)
        m.light_diffuse[:] = np.clip(saved[2] * light, 0.0, 1.0)
        m.light_ambient[:] = np.clip(saved[3] * light, 0.0, 1.0)
        m.vis.headlight.diffuse[:] = np.clip(saved[4] * light, 0.0, 1.0)
        m.vis.headlight.ambient[:] = np.clip(saved[5] * light, 0.0, 1.0)
        try:
            frame = self.render_posed(q, base_T_body)
            self.renderer.update_scene(self._render_data, camera="d455")
            rgb = self.renderer.render().copy()
        finally:
            m.cam_pos[self._cam_id], m.cam_quat[self._cam_id] = saved[0], saved[1]
            m.light_diffuse[:], m.light_ambient[:] = saved[2], saved[3]
            m.vis.headlight.diffuse[:], m.vis.headlight.ambient[:] = saved[4], saved[5]
        return Frame(frame.stamp_ns, rgb, frame.depth, base_T_body)

    def true_intrinsics(self) -> tuple[float, float, float, float]:
        """fx, fy, cx, cy of the rendered camera (pixel centres at integer coordinates)."""
        return true_intrinsics(self.cfg)

    def intrinsics(self) -> tuple[float, float, float, float]:
        """fx, fy, cx, cy as the camera reports them (``reported_intrinsics``)."""
        return reported_intrinsics(self.cfg)

    def nominal_base_T_camera(self) -> np.ndarray:
        """The camera pose the drawing gives (what the world reports as extrinsics)."""
        return nominal_base_T_camera(self.cfg)

    def base_T_camera(self) -> np.ndarray:
        """True pose of the OpenCV optical frame in the base (= world) frame."""
        T = np.eye(4)
        T[:3, :3] = self.data.cam_xmat[self._cam_id].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
        T[:3, 3] = self.data.cam_xpos[self._cam_id]
        return T

    def truth(self) -> dict:
        """Ground truth now: body pose, acupoints, contact (base frame)."""
        with self._lock:
            mp = self.data.mocap_pos[self._mocap_id].copy()
            mq = self.data.mocap_quat[self._mocap_id].copy()
            force = self._contact_force.copy()
            point = self._contact_point.copy()
            peak = self._max_force
            self._max_force = float(np.linalg.norm(force))
        T = np.eye(4)
        T[:3, :3] = quat_to_matrix(np.roll(mq, -1))
        T[:3, 3] = mp
        codes, body_positions, body_normals = self._labels
        positions = transform_points(T, body_positions)
        normals = body_normals @ T[:3, :3].T
        return {
            "body_position": mp.tolist(), "body_quaternion": np.roll(mq, -1).tolist(),
            "acupoint_codes": list(codes),
            "acupoint_positions": positions.ravel().tolist(),
            "acupoint_normals": normals.ravel().tolist(),
            "contact_force": force.tolist(), "contact_point": point.tolist(),
            "max_contact_force_n": peak,
        }
