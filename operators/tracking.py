"""Body-motion tracking (VBRM Eq. 6-8): ICP between body clouds and the motion criterion.

Method, chosen by measurement (``benchmarks/registration.py``: 210 recorded 30 Hz frames of a
20 mm shift and a 5 deg roll, the arm in view, D455-like noise, warm-started as here): each
frame is registered *onto* the reference with open3d's point-to-plane ICP (legacy API). The
reference is prepared once (table plane, voxel grid, normals, k-d tree), so a frame costs a
voxel grid and the ICP: 4.0 ms and 0.32 mm / 0.022 deg mean at the acupoint (10 mm voxels,
two cores); the whole depth -> motion path is ~12 ms. The reverse direction needs normals of
every frame (9.3 ms); GICP is as accurate but slower (open3d 14 ms; small_gicp 4.8 ms,
0.25 mm, one more dependency); point-to-point stalls at 3 mm mean, 14 mm worst, on smooth
skin; small_gicp's point-to-plane at 1.2 mm. Registering the frame onto the reference also
makes the fitness the share of *seen* points that match, so the arm's occlusion shadow and
holes do not read as a lost track; how much of the reference is seen is checked separately
(coverage).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import open3d as o3d
from scipy.spatial.transform import Rotation
from tuina.operators.geometry import (
    depth_to_points,
    fit_plane_ransac,
    outside_capsules,
    transform_points,
)


@dataclass(frozen=True)
class TrackerConfig:
    """Registration and gating parameters (metres, degrees, seconds)."""

    voxel_m: float = 0.01
    max_correspondence_m: float = 0.03
    iterations: int = 30
    min_points: int = 300  # voxels of a frame's body cloud
    min_coverage: float = 0.5  # frame voxels / reference voxels
    min_fitness: float = 0.6
    translation_threshold_m: float = 0.0005  # s(t, theta): motion that updates the plan
    rotation_threshold_deg: float = 0.1
    max_speed_m_s: float = 0.08  # faster body motion between frames: large motion
    max_rate_deg_s: float = 20.0
    max_total_m: float = 0.06  # further from the reference than this: large motion
    max_total_deg: float = 10.0
    lost_after_frames: int = 15  # consecutive bad frames before the track is lost
    table_margin_m: float = 0.012
    velocity_smoothing: float = 0.8  # weight of the newest frame's velocity
    velocity_deadband_m_s: float = 0.004  # slower everywhere on the body reads as still


@dataclass(frozen=True)
class MotionEstimate:
    """Body motion since the reference: p_now = R p_ref + t.

    ``transform`` is what trajectories should follow (it changes only when the motion
    criterion passes); ``estimate`` is this frame's registration, valid when status is ok.
    ``reground`` is true on the frame where the track was lost: the target must be found
    again.
    """

    transform: np.ndarray
    estimate: np.ndarray
    fitness: float
    inlier_rmse: float
    updated: bool
    status: str
    points: int
    coverage: float
    reground: bool = False
    twist: np.ndarray = field(default_factory=lambda: np.zeros(6))  # v (base origin), w


def motion_twist(previous: np.ndarray, current: np.ndarray, dt: float) -> np.ndarray:
    """Twist (v, w) with p_dot = w x p + v that moves ``previous`` to ``current`` in dt."""
    step = current @ np.linalg.inv(previous)
    w = Rotation.from_matrix(step[:3, :3]).as_rotvec() / dt
    return np.concatenate([step[:3, 3] / dt, w])


def predict(motion: np.ndarray, twist: np.ndarray, horizon_s: float) -> np.ndarray:
    """The motion ``horizon_s`` later at a constant twist."""
    step = np.eye(4)
    step[:3, :3] = Rotation.from_rotvec(twist[3:] * horizon_s).as_matrix()
    step[:3, 3] = twist[:3] * horizon_s
    return step @ motion


@dataclass
class TrackerWatch:
    """The body tracker seen from the controller, in robot time: how long it has been
    silent (from the trajectory's start, once it has spoken at all), and whether its body
    velocity may still be fed forward (two of its own frame periods at most)."""

    timeout_s: float
    seen_ns: int | None = None  # robot time of the first state after the latest body motion
    fresh: bool = False
    frames: list[int] = field(default_factory=list)  # the last two body motions' own stamps

    def motion(self, frame_stamp_ns: int) -> None:
        """A body motion came (stamped with its frame's time)."""
        self.fresh = True
        self.frames = [*self.frames[-1:], frame_stamp_ns]

    def new_plan(self) -> None:
        """A new trajectory: silence counts from its start (or from a motion heard since the
        last robot state, whichever input of the two came first)."""
        self.seen_ns = None

    def state(self, stamp_ns: int, start_ns: int) -> tuple[bool, bool, float]:
        """At a robot state: (silent too long, velocity still fed forward, age of the latest
        motion in s)."""
        if self.fresh:
            self.seen_ns, self.fresh = stamp_ns, False
        silent_s = (stamp_ns - (self.seen_ns or start_ns)) * 1e-9
        frame_s = (self.frames[1] - self.frames[0]) * 1e-9 if len(self.frames) == 2 else 0.1
        age_s = (stamp_ns - (self.seen_ns or stamp_ns)) * 1e-9
        return (bool(self.frames) and silent_s > self.timeout_s,
                silent_s <= 2 * max(frame_s, 0.01), age_s)


def rotation_angle_deg(R: np.ndarray) -> float:
    """|theta| of VBRM Eq. 7."""
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))


def roi_points(depth: np.ndarray, K: np.ndarray, base_T_camera: np.ndarray, stride: int,
               roi_min: np.ndarray, roi_max: np.ndarray, sampled: bool = False) -> np.ndarray:
    """Base-frame points of a depth image (every ``stride``-th pixel) inside the region;
    ``sampled``: the image holds only those pixels (``decode_depth(..., stride)``)."""
    pts = transform_points(base_T_camera, depth_to_points(K, depth, stride, sampled=sampled))
    return pts[np.all((pts >= roi_min) & (pts <= roi_max), axis=1)]


class BodyTracker:
    """Registers each frame's body cloud onto the reference, warm-started from the last one."""

    def __init__(self, config: TrackerConfig, seed: int = 0):
        self.config = config
        self.seed = seed
        self.reference: o3d.geometry.PointCloud | None = None
        self.reference_stamp_ns = 0
        self.table: np.ndarray | None = None  # a, b, c, d with the normal up
        self.centroid = np.zeros(3)
        self.extent = np.zeros((8, 3))  # corners of the reference's bounding box
        self._reset()

    def _reset(self) -> None:
        self.last = np.eye(4)
        self.last_stamp_ns = self.reference_stamp_ns
        self.published = np.eye(4)
        self.bad_frames = 0
        self.lost = False
        self.twist = np.zeros(6)
        self.since_update = 99  # frames since the published motion last changed

    def body_points(self, points_base: np.ndarray, arm_chain: np.ndarray | None,
                    arm_radius_m: float) -> np.ndarray:
        """Points of the body: above the table, outside the arm's capsules."""
        pts = points_base
        if self.table is not None and len(pts):
            pts = pts[pts @ self.table[:3] + self.table[3] > self.config.table_margin_m]
        if arm_chain is not None and len(pts):
            pts = pts[outside_capsules(pts, arm_chain, arm_radius_m)]
        return pts

    def set_reference(self, points_base: np.ndarray, stamp_ns: int,
                      arm_chain: np.ndarray | None = None, arm_radius_m: float = 0.0) -> str:
        """Take this frame (region-of-interest points, base) as the one the plan was made on.

        Finds the table plane once; returns "ok" or why the frame cannot be a reference.
        """
        cfg = self.config
        if len(points_base) < max(cfg.min_points, 3):
            return "no_cloud"
        rng = np.random.default_rng([self.seed, stamp_ns])
        # the table is the lowest large plane: search among the lowest points only, so a
        # broad flat back cannot pass for it
        low = points_base[points_base[:, 2] < np.percentile(points_base[:, 2], 10) + 0.02]
        normal, d, _ = fit_plane_ransac(low, cfg.table_margin_m * 0.5, 100, rng)
        if normal[2] < 0:
            normal, d = -normal, -d
        self.table = np.append(normal, d) if abs(normal[2]) > 0.9 else None
        body = self.body_points(points_base, arm_chain, arm_radius_m)
        cloud = self._voxels(body)
        if len(cloud.points) < cfg.min_points:
            return "no_cloud"
        cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(
            radius=cfg.voxel_m * 3, max_nn=20))
        self.reference = cloud
        self.reference_stamp_ns = stamp_ns
        self.centroid = np.asarray(cloud.points).mean(axis=0)
        lo, hi = cloud.get_min_bound(), cloud.get_max_bound()
        self.extent = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                                for z in (lo[2], hi[2])])
        self._reset()
        return "ok"

    def _voxels(self, points: np.ndarray) -> o3d.geometry.PointCloud:
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
        return pcd.voxel_down_sample(self.config.voxel_m)

    def _bad(self, status: str, fitness: float = 0.0, rmse: float = 0.0, points: int = 0,
             coverage: float = 0.0) -> MotionEstimate:
        self.bad_frames += 1
        reground = False
        if status == "large_motion" or self.bad_frames >= self.config.lost_after_frames:
            reground = not self.lost
            self.lost = True
        self.twist = np.zeros(6)  # no trusted motion: nothing to extrapolate
        return MotionEstimate(self.published, self.last, fitness, rmse, False, status, points,
                              coverage, reground)

    def update(self, points_base: np.ndarray, stamp_ns: int,
               arm_chain: np.ndarray | None = None, arm_radius_m: float = 0.0) -> MotionEstimate:
        """Estimate the motion of this frame's body relative to the reference."""
        cfg = self.config
        if self.reference is None:
            return MotionEstimate(self.published, self.last, 0.0, 0.0, False, "no_reference",
                                  0, 0.0)
        if self.lost:
            return MotionEstimate(self.published, self.last, 0.0, 0.0, False, "lost", 0, 0.0)
        finite = points_base[np.all(np.isfinite(points_base), axis=1)]
        current = self._voxels(self.body_points(finite, arm_chain, arm_radius_m))
        n = len(current.points)
        coverage = n / max(len(self.reference.points), 1)
        if n < cfg.min_points:
            return self._bad("no_cloud", points=n, coverage=coverage)
        if coverage < cfg.min_coverage:
            return self._bad("partial_view", points=n, coverage=coverage)
        # frame -> reference: the inverse of the body motion, warm-started from the last one
        result = o3d.pipelines.registration.registration_icp(
            current, self.reference, cfg.max_correspondence_m, np.linalg.inv(self.last),
            o3d.pipelines.registration.TransformationEstimationPointToPlane(),
            o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=cfg.iterations))
        fitness, rmse = float(result.fitness), float(result.inlier_rmse)
        if fitness < cfg.min_fitness:
            return self._bad("low_fitness", fitness, rmse, n, coverage)
        motion = np.linalg.inv(np.asarray(result.transformation))
        dt = max((stamp_ns - self.last_stamp_ns) * 1e-9, 1e-3)
        c = np.append(self.centroid, 1.0)
        step_m = float(np.linalg.norm((motion @ c - self.last @ c)[:3]))
        step_deg = rotation_angle_deg(motion[:3, :3] @ self.last[:3, :3].T)
        total_m = float(np.linalg.norm((motion @ c)[:3] - self.centroid))
        total_deg = rotation_angle_deg(motion[:3, :3])
        if (step_m / dt > cfg.max_speed_m_s or step_deg / dt > cfg.max_rate_deg_s
                or total_m > cfg.max_total_m or total_deg > cfg.max_total_deg):
            return self._bad("large_motion", fitness, rmse, n, coverage)
        self.bad_frames = 0
        a = cfg.velocity_smoothing
        self.twist = a * motion_twist(self.last, motion, dt) + (1 - a) * self.twist
        self.last, self.last_stamp_ns = motion, stamp_ns
        delta = np.linalg.inv(self.published) @ motion
        updated = (float(np.linalg.norm((delta @ c)[:3] - self.centroid))
                   > cfg.translation_threshold_m
                   or rotation_angle_deg(delta[:3, :3]) > cfg.rotation_threshold_deg)
        if updated:
            self.published = motion
            self.since_update = 0
        else:
            self.since_update += 1
        # the body counts as moving while the motion criterion keeps passing and some part of
        # it (a turn about the centroid moves the feet) is faster than the deadband
        speed = np.linalg.norm(self.twist[:3] + np.cross(self.twist[3:], self.extent), axis=1)
        moving = self.since_update <= 2 and speed.max() > cfg.velocity_deadband_m_s
        return MotionEstimate(self.published, motion, fitness, rmse, updated, "ok", n, coverage,
                              twist=self.twist.copy() if moving else np.zeros(6))


class RecentFrames:
    """Recent body regions with the joints at their time: grounding and pose-fit take a
    second or more, and the tracker's reference must be the frame the target was found on
    (the newest one when that frame is gone)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.frames: OrderedDict[int, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self.frames)

    def add(self, stamp_ns: int, points: np.ndarray, joints: np.ndarray | None) -> None:
        """A frame's body points (kept as float32) and the joints at its time."""
        self.frames[stamp_ns] = (points.astype(np.float32), joints)
        while len(self.frames) > self.size:
            self.frames.popitem(last=False)

    def reference(self, stamp_ns: int) -> tuple[int, np.ndarray, np.ndarray | None]:
        """The frame of ``stamp_ns`` (else the newest): its stamp, points, joints."""
        if stamp_ns not in self.frames:
            stamp_ns = next(reversed(self.frames))
        points, joints = self.frames[stamp_ns]
        return stamp_ns, points.astype(float), joints
