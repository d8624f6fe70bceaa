"""Body registration methods on the same recorded frames: time and error against the truth.

    .venv/bin/python benchmarks/registration.py [--seed 0] [--json OUT]

The frames are those of ``tuina eval tracking``: the sim graph's camera at 30 Hz, the phantom
moving by a scripted shift (20 mm) and roll (5 deg), the arm pressing on the moving ST36,
D455-like noise, z16 at 1 mm. They are rendered once and recorded under benchmarks/.cache.
Every method gets the same body points per frame (region of interest, table plane removed,
arm masked by kinematics, as the icp-tracker prepares them), prepares the reference once,
and registers each frame warm-started from its previous estimate, as the tracker does.
Time: body points -> motion, per frame (the back-projection is the same for all and is
left out). Error: at the acupoint, against the true motion since the reference frame.
This is a measurement, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import open3d as o3d
from tuina.operators.geometry import transform_points
from tuina.operators.phantom import ATLAS
from tuina.operators.tracking import (
    BodyTracker,
    TrackerConfig,
    roi_points,
    rotation_angle_deg,
)

CACHE = Path(__file__).parent / ".cache"
VOXEL_M = 0.01
MAX_CORRESPONDENCE_M = 0.03
ITERATIONS = 30
SCENARIOS = ("shift 20 mm", "roll 5 deg")
ROI_MIN = np.array([0.1, -0.9, -0.05])
ROI_MAX = np.array([1.0, 0.9, 0.3])
ARM_MASK_M = 0.08


def recorded_frames(seed: int) -> dict[str, Any]:
    """The scenarios' frames, rendered once (minutes) and then read from the cache."""
    path = CACHE / f"tracking-frames-supine-{seed}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    from tuina.operators.arms import arm_kinematics

    from tuina.evaluation.seeds import target_point
    from tuina.evaluation.tracking import SCENARIOS as ALL
    from tuina.evaluation.tracking import render_scenario
    from tuina.sim.world import MassageWorld, WorldConfig

    ik = arm_kinematics("fr3", 0.0466)
    out = {}
    with MassageWorld(WorldConfig()) as world:
        for sc in ALL:
            if sc.name in SCENARIOS:
                out[sc.name] = render_scenario(world, sc, ik, seed, target_point("supine"))
    CACHE.mkdir(exist_ok=True)
    path.write_bytes(pickle.dumps(out))
    return out


def body_frames(rendered: dict[str, Any]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per frame: the body points the tracker would register, and the true motion."""
    from tuina.operators.arms import arm_model

    arm = arm_model("fr3", 0.0466)
    frames, K, cam = rendered["frames"], rendered["K"], rendered["base_T_camera"]

    def region(f: dict) -> np.ndarray:
        depth = np.where(f["z16"] > 0, f["z16"] * 1e-3, np.nan)
        return roi_points(depth, K, cam, 4, ROI_MIN, ROI_MAX)

    # the tracker's own table plane and arm masking
    tracker = BodyTracker(TrackerConfig())
    tracker.set_reference(region(frames[0]), 0, arm.chain(frames[0]["q"]), ARM_MASK_M)
    points = [tracker.body_points(region(f), arm.chain(f["q"]), ARM_MASK_M) for f in frames]
    truths = [f["body"] @ np.linalg.inv(frames[0]["body"]) for f in frames]
    return points, truths


def _voxels(points: np.ndarray) -> o3d.geometry.PointCloud:
    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points)).voxel_down_sample(VOXEL_M)


def _normals(pcd: o3d.geometry.PointCloud) -> o3d.geometry.PointCloud:
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=3 * VOXEL_M, max_nn=20))
    return pcd


class Open3d:
    """open3d legacy ICP; ``onto_reference``: the frame is the source (reference normals
    once), else the reference is the source and every frame needs normals."""

    def __init__(self, estimation: Any, onto_reference: bool, generalized: bool = False):
        self.estimation, self.onto, self.generalized = estimation, onto_reference, generalized

    def prepare_reference(self, points: np.ndarray) -> Any:
        return _normals(_voxels(points))

    def register(self, reference: Any, points: np.ndarray, init: np.ndarray) -> np.ndarray:
        reg = o3d.pipelines.registration
        frame = _voxels(points)
        if self.generalized or not self.onto:
            frame = _normals(frame)
        criteria = reg.ICPConvergenceCriteria(max_iteration=ITERATIONS)
        run = reg.registration_generalized_icp if self.generalized else reg.registration_icp
        if self.onto:
            result = run(frame, reference, MAX_CORRESPONDENCE_M, np.linalg.inv(init),
                         self.estimation, criteria)
            return np.linalg.inv(np.asarray(result.transformation))
        result = run(reference, frame, MAX_CORRESPONDENCE_M, init, self.estimation, criteria)
        return np.asarray(result.transformation)


class SmallGICP:
    """small_gicp, the frame registered onto the prepared reference."""

    def __init__(self, kind: str):
        import small_gicp

        self.sg, self.kind = small_gicp, kind

    def prepare_reference(self, points: np.ndarray) -> Any:
        return self.sg.preprocess_points(points, downsampling_resolution=VOXEL_M,
                                         num_neighbors=20, num_threads=2)

    def register(self, reference: Any, points: np.ndarray, init: np.ndarray) -> np.ndarray:
        target, tree = reference
        if self.kind == "GICP":
            source, _ = self.sg.preprocess_points(points, downsampling_resolution=VOXEL_M,
                                                  num_neighbors=20, num_threads=2)
        else:
            source = self.sg.voxelgrid_sampling(points, VOXEL_M, num_threads=2)
        result = self.sg.align(target, source, tree, init_T_target_source=np.linalg.inv(init),
                               registration_type=self.kind, num_threads=2,
                               max_correspondence_distance=MAX_CORRESPONDENCE_M,
                               max_iterations=ITERATIONS)
        return np.linalg.inv(np.asarray(result.T_target_source))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    recorded = recorded_frames(args.seed)
    reg = o3d.pipelines.registration
    methods: dict[str, Any] = {
        "open3d point-to-plane, frame onto reference (tracker)":
            Open3d(reg.TransformationEstimationPointToPlane(), True),
        "open3d point-to-plane, reference onto frame":
            Open3d(reg.TransformationEstimationPointToPlane(), False),
        "open3d GICP, frame onto reference":
            Open3d(reg.TransformationEstimationForGeneralizedICP(), True, generalized=True),
        "open3d point-to-point, frame onto reference":
            Open3d(reg.TransformationEstimationPointToPoint(), True),
    }
    try:
        methods["small_gicp GICP"] = SmallGICP("GICP")
        methods["small_gicp point-to-plane"] = SmallGICP("PLANE_ICP")
    except ImportError:
        print("small_gicp is not installed: pip install -e '.[bench]'")
    acu = next(a for a in ATLAS if a.code == "ST36")
    rows: dict[str, dict[str, float]] = {}
    for name, method in methods.items():
        times, t_err, r_err = [], [], []
        for rendered in recorded.values():
            points, truths = body_frames(rendered)
            p_ref = transform_points(rendered["frames"][0]["body"], acu.position[None])
            reference = method.prepare_reference(points[0])
            estimate = np.eye(4)
            for pts, truth in zip(points[1:], truths[1:], strict=True):
                start = time.perf_counter()
                estimate = method.register(reference, pts, estimate)
                times.append((time.perf_counter() - start) * 1e3)
                t_err.append(float(np.linalg.norm(transform_points(estimate, p_ref)
                                                  - transform_points(truth, p_ref))) * 1e3)
                r_err.append(rotation_angle_deg(estimate[:3, :3] @ truth[:3, :3].T))
        rows[name] = {"ms_median": statistics.median(times),
                      "translation_mm_mean": float(np.mean(t_err)),
                      "translation_mm_max": float(np.max(t_err)),
                      "rotation_deg_mean": float(np.mean(r_err)),
                      "rotation_deg_max": float(np.max(r_err))}
    frames = sum(len(r["frames"]) - 1 for r in recorded.values())
    print(f"{frames} frames ({', '.join(recorded)}), voxel {VOXEL_M * 1e3:.0f} mm, "
          "arm in view and masked, warm-started\n")
    print("| method | body points -> motion ms (median) | error at ST36 mm (mean / max) | "
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
