"""Hand-eye (eye-to-hand) calibration: a marker ball on the end-effector seen by the camera.

The camera sees the marker centre p^m in its own frame; the robot knows where the marker is
in the base frame, p^e = base_T_ee * marker offset. base_T_camera is the weighted
least-squares rigid transform between the two point sets (VBRM Eq. 1-4: the weighted
cross-covariance X W Y^T, its SVD, det-corrected rotation, mean-difference translation).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation
from tuina.operators.geometry import backproject, make_transform, transform_points


class CalibrationError(ValueError):
    """The calibration data cannot determine the camera pose."""


class MarkerNotFound(ValueError):
    """The marker is not (fully) visible in this frame."""


@dataclass(frozen=True)
class MarkerColour:
    """HSV band of the marker (OpenCV ranges: hue 0-179, saturation and value 0-255)."""

    hue: tuple[int, int] = (45, 85)
    min_saturation: int = 120
    min_value: int = 60


@dataclass(frozen=True)
class MarkerObservation:
    """Marker centre in the camera frame and how much of it was seen."""

    centre_camera: np.ndarray
    pixels: int
    rms_m: float


@dataclass(frozen=True)
class Calibration:
    """The solved camera pose and how well the data agree with it."""

    base_T_camera: np.ndarray
    residuals_m: np.ndarray  # per pose, |R p^m + t - p^e|
    weights: np.ndarray
    marker_in_ee: np.ndarray | None = None  # the marker's offset as solved (None: as given)


def detect_marker(rgb: np.ndarray, depth: np.ndarray, K: np.ndarray, radius_m: float,
                  colour: MarkerColour = MarkerColour(), min_pixels: int = 40,
                  ) -> MarkerObservation:
    """Centre of the coloured marker ball: colour mask, then a fixed-radius sphere fit to depth.

    The largest blob of the marker colour is eroded by one pixel (its rim mixes depths),
    back-projected, and a sphere of the known radius is fitted robustly (soft-L1), so the
    centre lies behind the visible cap rather than on it.
    """
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
    lower = np.array([colour.hue[0], colour.min_saturation, colour.min_value], np.uint8)
    upper = np.array([colour.hue[1], 255, 255], np.uint8)
    mask = cv2.inRange(hsv, lower, upper)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        raise MarkerNotFound("no marker-coloured pixels in the image")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    blob = (labels == largest).astype(np.uint8)
    blob = cv2.erode(blob, np.ones((3, 3), np.uint8)).astype(bool)
    z = depth[blob]
    valid = np.isfinite(z) & (z > 0)
    if valid.sum() < min_pixels:
        raise MarkerNotFound(f"{int(blob.sum())} marker pixels seen, {int(valid.sum())} with "
                             f"depth (need {min_pixels}): the marker is occluded, too small "
                             "or out of the depth range")
    v, u = np.nonzero(blob)
    pts = backproject(K, np.stack([u[valid], v[valid]], axis=1).astype(float),
                      z[valid].astype(float))
    cap = np.median(pts, axis=0)
    start = cap + radius_m * cap / np.linalg.norm(cap)  # the centre is behind the cap

    def distance_to_sphere(c: np.ndarray) -> np.ndarray:
        return np.linalg.norm(pts - c, axis=1) - radius_m

    fit = least_squares(distance_to_sphere, start, loss="soft_l1", f_scale=0.002)
    rms = float(np.sqrt(np.mean(fit.fun**2)))
    return MarkerObservation(fit.x, int(valid.sum()), rms)


def marker_in_base(base_T_ee: np.ndarray, marker_in_ee: np.ndarray) -> np.ndarray:
    """Marker centre in the base frame from the end-effector pose the robot reports."""
    return transform_points(base_T_ee, np.asarray(marker_in_ee, float)[None])[0]


def depth_weights(marker_camera: np.ndarray) -> np.ndarray:
    """Weights 1/sigma^2 for stereo depth, whose noise grows with z^2; normalised to mean 1."""
    z = np.asarray(marker_camera)[:, 2]
    w = 1.0 / z**4
    return w / w.mean()


def solve_base_T_camera(marker_camera: np.ndarray, marker_base: np.ndarray,
                        weights: np.ndarray | None = None,
                        min_spread_m: float = 0.02) -> Calibration:
    """Weighted least-squares rigid transform with marker_base ~= R marker_camera + t.

    Raises CalibrationError when fewer than 3 poses are given or when the poses are
    (nearly) collinear, which leaves the rotation about that line undetermined.
    """
    pm = np.asarray(marker_camera, float)
    pe = np.asarray(marker_base, float)
    if pm.shape != pe.shape or pm.ndim != 2 or pm.shape[1] != 3:
        raise CalibrationError(f"marker and end-effector sets must both be Nx3, got "
                               f"{pm.shape} and {pe.shape}")
    n = len(pm)
    if n < 3:
        raise CalibrationError(f"{n} calibration poses; at least 3 (better 20) are needed")
    if not (np.all(np.isfinite(pm)) and np.all(np.isfinite(pe))):
        raise CalibrationError("calibration data hold NaN or infinite values; drop those rows")
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    if w.shape != (n,) or np.any(w <= 0) or not np.all(np.isfinite(w)):
        raise CalibrationError("calibration weights must be one positive number per pose")
    spread = np.linalg.svd(pe - pe.mean(axis=0), compute_uv=False) / np.sqrt(n)
    if spread[1] < min_spread_m:
        raise CalibrationError(
            f"the calibration poses are collinear (spread off their line {spread[1] * 1e3:.1f}"
            f" mm < {min_spread_m * 1e3:.0f} mm): move the arm through poses that span a "
            "plane or a volume")
    w_mean = w / w.sum()
    centre_m = w_mean @ pm
    centre_e = w_mean @ pe
    # align_vectors solves the weighted SVD problem of Eq. 1-3, reflection-corrected
    rotation, _ = Rotation.align_vectors(pe - centre_e, pm - centre_m, weights=w)
    R = rotation.as_matrix()
    T = make_transform(R, centre_e - R @ centre_m)
    residuals = np.linalg.norm(transform_points(T, pm) - pe, axis=1)
    return Calibration(T, residuals, w)


def solve_with_marker_offset(marker_camera: np.ndarray, base_T_ee: np.ndarray,
                             marker_nominal: np.ndarray, weights: np.ndarray | None = None,
                             tolerance_m: float = 0.003, noise_m: float = 0.001
                             ) -> Calibration:
    """The camera pose and the marker's offset in the end-effector frame together: a marker
    is mounted within ``tolerance_m`` of its drawing, and an offset taken as drawn puts its
    error into the camera pose. Least squares from the weighted SVD solution, the offset
    drawn towards its nominal value by the mount tolerance (so poses that turn the tool
    little leave it where it was drawn); ``noise_m`` is the marker centre's noise."""
    from scipy.optimize import least_squares

    cam = np.asarray(marker_camera, float)
    ee = np.asarray(base_T_ee, float)
    nominal = np.asarray(marker_nominal, float)
    first = solve_base_T_camera(cam, ee[:, :3, :3] @ nominal + ee[:, :3, 3], weights)
    root_w = np.sqrt(first.weights)[:, None]

    def residual(x: np.ndarray) -> np.ndarray:
        R = Rotation.from_rotvec(x[:3]).as_matrix()
        marker_base = ee[:, :3, :3] @ x[6:] + ee[:, :3, 3]
        miss = (cam @ R.T + x[3:6] - marker_base) * root_w / noise_m
        return np.concatenate([miss.ravel(), (x[6:] - nominal) / tolerance_m])

    T0 = first.base_T_camera
    x0 = np.concatenate([Rotation.from_matrix(T0[:3, :3]).as_rotvec(), T0[:3, 3], nominal])
    x = least_squares(residual, x0).x
    T = make_transform(Rotation.from_rotvec(x[:3]).as_matrix(), x[3:6])
    marker_base = ee[:, :3, :3] @ x[6:] + ee[:, :3, 3]
    residuals = np.linalg.norm(transform_points(T, cam) - marker_base, axis=1)
    return Calibration(T, residuals, first.weights, x[6:].copy())


def calibration_poses(centre: np.ndarray, half_extent: np.ndarray, count: int,
                      rng: np.random.Generator, facing_yaw_deg: float = 0.0,
                      max_tilt_deg: float = 10.0, max_yaw_deg: float = 30.0,
                      ) -> list[np.ndarray]:
    """End-effector poses (4x4, tool pointing down) spread through a box around ``centre``.

    Positions are a shuffled Latin hypercube of the box, so every axis is covered evenly;
    the end-effector x axis (the marker's side) turns towards ``facing_yaw_deg``, and the
    orientations tilt and turn a little so the marker is seen from several sides.
    """
    if count < 3:
        raise CalibrationError(f"{count} calibration poses; at least 3 are needed")
    strata = np.stack([rng.permutation(count) for _ in range(3)], axis=1)
    unit = (strata + rng.random((count, 3))) / count * 2.0 - 1.0
    positions = np.asarray(centre) + unit * np.asarray(half_extent)
    down = np.diag([1.0, -1.0, -1.0])
    poses = []
    for p in positions:
        tilt = rng.uniform(-max_tilt_deg, max_tilt_deg, 2)
        yaw = facing_yaw_deg + rng.uniform(-max_yaw_deg, max_yaw_deg)
        R = Rotation.from_euler("xyz", [tilt[0], tilt[1], yaw], degrees=True).as_matrix()
        poses.append(make_transform(R @ down, p))
    return poses


def positioning_errors(points_base: np.ndarray, estimate: np.ndarray, K_estimate: np.ndarray,
                       truth: np.ndarray, K_truth: np.ndarray,
                       size: tuple[int, int]) -> np.ndarray:
    """What a calibration leaves in positions: each point (base frame) the true camera sees
    (its pixel and depth; points outside the ``size`` = (width, height) image or behind the
    camera are left out), back-projected with the estimated pose and intrinsics; the
    distances (m). A camera pose that absorbed an intrinsics error scores well here."""
    pts = np.asarray(points_base, float)
    in_camera = transform_points(np.linalg.inv(truth), pts)
    ahead = in_camera[:, 2] > 0.05
    uv = (in_camera[ahead] @ K_truth.T)[:, :2] / in_camera[ahead, 2:3]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < size[0]) & (uv[:, 1] >= 0) & (uv[:, 1] < size[1])
    seen = backproject(K_estimate, uv[inside], in_camera[ahead][inside, 2])
    return np.linalg.norm(transform_points(estimate, seen) - pts[ahead][inside], axis=1)


def pose_error(estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Translation (m) and rotation (deg) between two poses."""
    delta = np.linalg.inv(truth) @ estimate
    angle = Rotation.from_matrix(delta[:3, :3]).magnitude()
    return float(np.linalg.norm(estimate[:3, 3] - truth[:3, 3])), float(np.degrees(angle))
