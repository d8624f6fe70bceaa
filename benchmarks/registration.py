"""Body registration methods on the same frames: time and error against the true motion.

    .venv/bin/python benchmarks/registration.py [--frames 8] [--seed 0] [--json OUT]

Frames are rendered once from the simulated world (default camera, phantom moved by known
translations of 10-20 mm and rotations of 3-5 deg about its own axes), passed through the
D455-like depth model, and cached under benchmarks/.cache. Every method prepares the
reference body cloud once and registers it to each moved one from the identity (the worst
case of the tracker, which warm-starts from its last estimate). Time is the per-frame
depth -> motion path: back projection, region of interest, downsampling, normals or
covariances, registration.
This is a measurement, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import open3d as o3d
from scipy.spatial.transform import Rotation
from tuina.operators.geometry import (
    depth_to_points,
    intrinsics_matrix,
    make_transform,
    transform_points,
)
from tuina.operators.sensor import DepthNoise, apply_depth_noise
from tuina.operators.tracking import rotation_angle_deg

CACHE = Path(__file__).parent / ".cache"
ROI_MIN = np.array([0.1, -0.9, 0.01])
ROI_MAX = np.array([1.0, 0.9, 0.3])
VOXEL_M = 0.01
MAX_CORRESPONDENCE_M = 0.03


def motions(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Body-frame motions: 10-20 mm in the table plane, 3-5 deg about a random axis."""
    out = []
    for _ in range(count):
        direction = rng.normal(size=2)
        t = np.append(direction / np.linalg.norm(direction) * rng.uniform(0.01, 0.02), 0.0)
        axis = rng.normal(size=3)
        rot = Rotation.from_rotvec(axis / np.linalg.norm(axis) * np.radians(rng.uniform(3, 5)))
        out.append(make_transform(rot.as_matrix(), t))
    return out


def render_frames(count: int, seed: int) -> dict[str, np.ndarray]:
    """Reference + moved depth frames, with the true base-frame motion of each."""
    path = CACHE / f"frames-{count}-{seed}.npz"
    if path.exists():
        return dict(np.load(path))
    from tuina.sim.world import MassageWorld, WorldConfig, nominal_base_T_body

    cfg = WorldConfig()
    nominal = nominal_base_T_body(cfg)
    rng = np.random.default_rng(seed)
    depths, truths = [], []
    with MassageWorld(cfg) as world:
        K = intrinsics_matrix(*world.intrinsics())
        cam = world.base_T_camera()
        for body_motion in [np.eye(4), *motions(count, rng)]:
            body = nominal @ body_motion
            with world._lock:  # the benchmark poses the body directly between steps
                world.data.mocap_pos[world._mocap_id] = body[:3, 3]
                world.data.mocap_quat[world._mocap_id] = np.roll(
                    Rotation.from_matrix(body[:3, :3]).as_quat(), 1)
            time.sleep(0.05)
            depths.append(world.render().depth)
            truths.append(body @ np.linalg.inv(nominal))  # base-frame motion of the body
    CACHE.mkdir(exist_ok=True)
    np.savez_compressed(path, depth=np.array(depths), truth=np.array(truths), K=K, cam=cam)
    return dict(np.load(path))


def body_points(depth: np.ndarray, K: np.ndarray, cam: np.ndarray) -> np.ndarray:
    pts = transform_points(cam, depth_to_points(K, depth, stride=2))
    return pts[np.all((pts >= ROI_MIN) & (pts <= ROI_MAX), axis=1)]


def _o3d_cloud(points: np.ndarray) -> o3d.geometry.PointCloud:
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points)).voxel_down_sample(VOXEL_M)
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=3 * VOXEL_M, max_nn=20))
    pcd.orient_normals_towards_camera_location(np.array([0.0, 0.0, 10.0]))
    return pcd


class Method:
    """A registration method: ``prepare`` a cloud once, ``register`` reference -> current."""

    def prepare(self, points: np.ndarray) -> Any:
        return _o3d_cloud(points)

    def register(self, reference: Any, current: Any) -> np.ndarray:
        raise NotImplementedError


class Open3dICP(Method):
    def __init__(self, estimation: Any):
        self.estimation = estimation

    def register(self, reference: Any, current: Any) -> np.ndarray:
        result = o3d.pipelines.registration.registration_icp(
            reference, current, MAX_CORRESPONDENCE_M, np.eye(4), self.estimation,
            o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=30))
        return np.asarray(result.transformation)


class Open3dGICP(Method):
    def register(self, reference: Any, current: Any) -> np.ndarray:
        result = o3d.pipelines.registration.registration_generalized_icp(
            reference, current, MAX_CORRESPONDENCE_M, np.eye(4),
            o3d.pipelines.registration.TransformationEstimationForGeneralizedICP(),
            o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=30))
        return np.asarray(result.transformation)


class SmallGICP(Method):
    def __init__(self, kind: str):
        import small_gicp

        self.small_gicp = small_gicp
        self.kind = kind

    def prepare(self, points: np.ndarray) -> Any:
        # downsampling, covariances / normals and the k-d tree, on two threads
        return self.small_gicp.preprocess_points(points, downsampling_resolution=VOXEL_M,
                                                 num_neighbors=20, num_threads=2)

    def register(self, reference: Any, current: Any) -> np.ndarray:
        ref_cloud, _ = reference
        cur_cloud, cur_tree = current
        # align(target, source) estimates T_target_source: current <- reference
        result = self.small_gicp.align(cur_cloud, ref_cloud, cur_tree, registration_type=self.kind,
                                       max_correspondence_distance=MAX_CORRESPONDENCE_M,
                                       num_threads=2, max_iterations=30)
        return np.asarray(result.T_target_source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    data = render_frames(args.frames, args.seed)
    K, cam = data["K"], data["cam"]
    noise = DepthNoise()
    noisy = [apply_depth_noise(d, K[0, 0], noise, np.random.default_rng([args.seed, i]))
             for i, d in enumerate(data["depth"])]
    estimation = o3d.pipelines.registration
    methods: dict[str, Method] = {
        "open3d point-to-plane": Open3dICP(estimation.TransformationEstimationPointToPlane()),
        "open3d GICP": Open3dGICP(),
        "open3d point-to-point": Open3dICP(estimation.TransformationEstimationPointToPoint()),
    }
    try:
        methods["small_gicp GICP"] = SmallGICP("GICP")
        methods["small_gicp point-to-plane"] = SmallGICP("PLANE_ICP")
    except ImportError:
        print("small_gicp is not installed: pip install small_gicp==1.0.1")
    reference_points = body_points(noisy[0], K, cam)
    rows = {}
    for name, method in methods.items():
        reference = method.prepare(reference_points)
        times, t_err, r_err = [], [], []
        for depth, truth in zip(noisy[1:], data["truth"][1:], strict=True):
            start = time.perf_counter()
            T = method.register(reference, method.prepare(body_points(depth, K, cam)))
            times.append((time.perf_counter() - start) * 1e3)
            delta = np.linalg.inv(truth) @ T
            t_err.append(float(np.linalg.norm(T[:3, 3] - truth[:3, 3])) * 1e3)
            r_err.append(rotation_angle_deg(delta[:3, :3]))
        rows[name] = {"ms_median": statistics.median(times), "translation_mm_mean":
                      float(np.mean(t_err)), "translation_mm_max": float(np.max(t_err)),
                      "rotation_deg_mean": float(np.mean(r_err)),
                      "rotation_deg_max": float(np.max(r_err))}
    print(f"{args.frames} moved frames, 10-20 mm / 3-5 deg, voxel {VOXEL_M * 1e3:.0f} mm\n")
    print("| method | depth->motion ms (median) | translation mm (mean / max) | "
          "rotation deg (mean / max) |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['ms_median']:.1f} | {r['translation_mm_mean']:.2f} / "
              f"{r['translation_mm_max']:.2f} | {r['rotation_deg_mean']:.3f} / "
              f"{r['rotation_deg_max']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
