"""Hand-eye calibration: marker detection, the weighted SVD solve, tuina calibrate."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation
from tuina.operators.calibration import (
    CalibrationError,
    MarkerNotFound,
    calibration_poses,
    detect_marker,
    marker_in_base,
    pose_error,
    positioning_errors,
    solve_base_T_camera,
    solve_with_marker_offset,
)
from tuina.operators.geometry import make_transform, transform_points

from tuina.calibrate import PoseSample, samples_frame

from .bounded import run_bounded
from .test_operators import K

ROOT = Path(__file__).resolve().parents[1]
TRUE_CAM = make_transform(
    Rotation.from_euler("xyz", [178.0, 1.5, -91.0], degrees=True).as_matrix(),
    np.array([0.553, -0.004, 0.946]))
MARKER_IN_EE = np.array([0.09, 0.0, -0.0734])


def synthetic_samples(count: int, noise_m: float, seed: int = 0) -> list[PoseSample]:
    rng = np.random.default_rng(seed)
    poses = calibration_poses(np.array([0.55, 0.0, 0.35]), np.array([0.12, 0.12, 0.08]),
                              count, rng)
    cam_T_base = np.linalg.inv(TRUE_CAM)
    samples = []
    for pose in poses:
        seen = transform_points(cam_T_base, marker_in_base(pose, MARKER_IN_EE)[None])[0]
        samples.append(PoseSample(pose, seen + rng.normal(0, noise_m, 3)))
    return samples


def test_weighted_svd_recovers_the_camera_from_noisy_poses():
    samples = synthetic_samples(20, 0.2e-3)
    cam = np.array([s.marker_camera for s in samples])
    base = np.array([marker_in_base(s.base_T_ee, MARKER_IN_EE) for s in samples])
    calibration = solve_base_T_camera(cam, base)
    dt, dr = pose_error(calibration.base_T_camera, TRUE_CAM)
    assert dt < 1e-3 and dr < 0.2  # the bound asked of a calibration from 20 poses
    assert calibration.residuals_m.mean() < 1e-3
    # a wrong marker offset shows up in the residuals
    shifted = np.array([marker_in_base(s.base_T_ee, MARKER_IN_EE + [0.01, 0, 0])
                        for s in samples])
    assert solve_base_T_camera(cam, shifted).residuals_m.max() > 3e-3


def test_the_marker_offset_is_solved_with_the_camera_within_its_mount_tolerance():
    rng = np.random.default_rng(4)
    mounted = MARKER_IN_EE + [0.0015, -0.0012, 0.001]  # as mounted, off its drawing
    poses = calibration_poses(np.array([0.55, 0.0, 0.35]), np.array([0.12, 0.12, 0.08]), 20,
                              rng)
    cam_T_base = np.linalg.inv(TRUE_CAM)
    cam = np.array([transform_points(cam_T_base, marker_in_base(p, mounted)[None])[0]
                    + rng.normal(0, 0.3e-3, 3) for p in poses])
    as_drawn = solve_base_T_camera(cam, np.array([marker_in_base(p, MARKER_IN_EE)
                                                  for p in poses]))
    solved = solve_with_marker_offset(cam, np.array(poses), MARKER_IN_EE)
    drawn_mm = pose_error(as_drawn.base_T_camera, TRUE_CAM)[0] * 1e3
    solved_mm = pose_error(solved.base_T_camera, TRUE_CAM)[0] * 1e3
    assert drawn_mm > 1.0  # the mount error went into the camera pose
    assert solved_mm < 0.5 * drawn_mm
    assert np.linalg.norm(solved.marker_in_ee - mounted) < np.linalg.norm(
        MARKER_IN_EE - mounted)


def test_collinear_poses_are_refused_with_the_fix():
    line = np.linspace(0, 0.3, 10)[:, None] * np.array([1.0, 0.5, 0.2]) + [0.4, 0, 0.3]
    seen = transform_points(np.linalg.inv(TRUE_CAM), line)
    with pytest.raises(CalibrationError, match="collinear.*span a plane") as err:
        solve_base_T_camera(seen, line)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("n, bad, message", [
    (2, None, "at least 3"),
    (10, "nan", "NaN"),
])
def test_too_few_or_broken_poses_are_refused(n, bad, message):
    samples = synthetic_samples(max(n, 3), 0.0)[:n]
    cam = np.array([s.marker_camera for s in samples])
    base = np.array([marker_in_base(s.base_T_ee, MARKER_IN_EE) for s in samples])
    if bad == "nan":
        cam[3, 1] = np.nan
    with pytest.raises(CalibrationError, match=message):
        solve_base_T_camera(cam, base)


def sphere_image(centre: np.ndarray, radius: float, noise_m: float, seed: int = 0):
    """RGB + depth of a green ball over a grey floor 1 m away (optical frame)."""
    v, u = np.mgrid[0:480, 0:640].astype(float)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    norm = np.linalg.norm(rays, axis=-1)
    d = rays / norm[..., None]
    b = d @ centre
    disc = b**2 - (centre @ centre - radius**2)
    hit = disc > 0
    t = np.where(hit, b - np.sqrt(np.maximum(disc, 0)), np.nan)
    depth = np.where(hit, t / norm, 1.0)  # z-depth
    rgb = np.full((480, 640, 3), 128, np.uint8)
    rgb[hit] = (25, 215, 50)
    depth = depth + np.random.default_rng(seed).normal(0, noise_m, depth.shape)
    return rgb, depth.astype(np.float32)


def test_marker_centre_is_found_behind_the_visible_cap():
    centre = np.array([0.05, -0.03, 0.55])
    rgb, depth = sphere_image(centre, 0.015, 0.8e-3)
    obs = detect_marker(rgb, depth, K, 0.015)
    assert np.linalg.norm(obs.centre_camera - centre) < 0.5e-3
    assert obs.pixels > 200


def test_missing_marker_is_reported():
    rgb, depth = sphere_image(np.array([0.0, 0.0, 0.5]), 0.015, 0.0)
    with pytest.raises(MarkerNotFound, match="no marker-coloured"):
        detect_marker(np.full_like(rgb, 128), depth, K, 0.015)
    depth[:] = np.nan
    with pytest.raises(MarkerNotFound, match="with depth"):
        detect_marker(rgb, depth, K, 0.015)


def run_tuina(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "tuina"
    return run_bounded([exe, *args], 300)


def test_calibrate_from_recorded_pairs_writes_the_extrinsics(tmp_path):
    pairs = tmp_path / "pairs.csv"
    samples_frame(synthetic_samples(20, 0.2e-3)).write_csv(pairs)
    out = tmp_path / "cal" / "extrinsics.json"
    proc = run_tuina("calibrate", str(ROOT / "dataflows" / "sim.yml"), "--pairs", str(pairs),
                     "--marker-in-ee", *map(str, MARKER_IN_EE), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "residual mean" in proc.stdout
    data = json.loads(out.read_text())
    T = np.asarray(data["base_T_camera"]).reshape(4, 4)
    dt, dr = pose_error(T, TRUE_CAM)
    assert dt < 1e-3 and dr < 0.2 and data["poses"] == 20


def test_calibrate_with_collinear_pairs_writes_nothing(tmp_path):
    samples = synthetic_samples(10, 0.0)
    line = [PoseSample(make_transform(s.base_T_ee[:3, :3], [0.4 + 0.03 * i, 0.0, 0.35]),
                       s.marker_camera) for i, s in enumerate(samples)]
    pairs = tmp_path / "pairs.csv"
    samples_frame(line).write_csv(pairs)
    out = tmp_path / "extrinsics.json"
    proc = run_tuina("calibrate", str(ROOT / "dataflows" / "sim.yml"), "--pairs", str(pairs),
                     "--marker-in-ee", "0", "0", "0", "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "collinear" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("graph_name", ["sim.yml", "baxter-sim.yml"])
def test_committed_sim_extrinsics_match_the_sim_camera(graph_name):
    from tuina.operators.geometry import intrinsics_matrix

    from tuina.calibrate import BODY_REGION
    from tuina.settings.world import world_config_from_env
    from tuina.sim.world import reported_intrinsics, true_base_T_camera, true_intrinsics

    graph = yaml.safe_load((ROOT / "dataflows" / graph_name).read_text())
    nodes = {n["id"]: n for n in graph["nodes"]}
    cfg = world_config_from_env(ROOT / "dataflows" / graph_name, nodes["world"].get("env"))
    path = ROOT / "dataflows" / nodes["camera"]["env"]["EXTRINSICS_FILE"]
    T = np.asarray(json.loads(path.read_text())["base_T_camera"]).reshape(4, 4)
    grid = np.stack(np.meshgrid(*(np.linspace(lo, hi, 5) for lo, hi in zip(*BODY_REGION,
                                                                             strict=True))),
                    axis=-1).reshape(-1, 3)
    errors = positioning_errors(grid, T, intrinsics_matrix(*reported_intrinsics(cfg)),
                                true_base_T_camera(cfg), intrinsics_matrix(*true_intrinsics(cfg)),
                                (cfg.width, cfg.height))
    # the files were made from 20 poses through the D455's depth bias and the intrinsics'
    # error: 1.5 mm mean at the body (the camera pose itself 1.7-2.4 mm, 0.12 deg off)
    assert len(errors) > 50
    assert errors.mean() < 2.0e-3 and errors.max() < 4.0e-3, \
        f"re-run: tuina calibrate dataflows/{graph_name}"


@pytest.mark.e2e
@pytest.mark.parametrize("graph_name, poses, seed, seen", [
    ("sim.yml", 8, 3, 6),
    # seen from straight above, the Baxter's forearm hides the marker in about a third of
    # the poses: the defaults, which made the committed file
    ("baxter-sim.yml", 20, 0, 12),
])
def test_calibrate_in_the_sim_world_moves_the_arm_and_sees_the_marker(tmp_path, graph_name,
                                                                       poses, seed, seen):
    out = tmp_path / "extrinsics.json"
    proc = run_tuina("calibrate", str(ROOT / "dataflows" / graph_name), "--poses", str(poses),
                     "--seed", str(seed), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("against the simulated"))
    mean_mm, max_mm = (float(v.split()[0]) for v in line.split(";")[1].split(",")[:2])
    # what the calibration leaves at the body, the depth's bias and the reported intrinsics'
    # error included: 2.0 mm mean, 4.1 mm max from 8 poses; 1.6 mm, 2.4 mm from the Baxter's
    # 20 (before the sensor's bias, the camera pose alone was held to 1 mm and 0.2 deg)
    assert mean_mm < 2.5 and max_mm < 5.0, line
    assert json.loads(out.read_text())["poses"] >= seen


@pytest.mark.parametrize("defect, message", [
    ("drop_column", "lacks columns marker_z"),
    ("zero_quaternion", "row 2: the end-effector quaternion"),
])
def test_broken_pairs_file_is_one_line_and_no_file(tmp_path, defect, message):
    frame = samples_frame(synthetic_samples(6, 0.0))
    if defect == "drop_column":
        frame = frame.drop("marker_z")
    else:
        frame[1, "ee_qx"] = frame[1, "ee_qy"] = frame[1, "ee_qz"] = frame[1, "ee_qw"] = 0.0
    pairs = tmp_path / "pairs.csv"
    frame.write_csv(pairs)
    out = tmp_path / "extrinsics.json"
    proc = run_tuina("calibrate", str(ROOT / "dataflows" / "sim.yml"), "--pairs", str(pairs),
                     "--marker-in-ee", "0", "0", "0", "--out", str(out))
    assert proc.returncode == 2 and message in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and not out.exists()
