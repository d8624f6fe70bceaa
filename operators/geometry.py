"""Rigid transforms, camera projection, plane fitting and tool orientation."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def make_transform(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4x4 homogeneous transform from a 3x3 rotation and a translation."""
    T = np.eye(4)
    T[:3, :3] = rotation
    T[:3, 3] = translation
    return T


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to Nx3 points."""
    return points @ T[:3, :3].T + T[:3, 3]


def quat_to_matrix(quat_xyzw: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) -> 3x3 rotation matrix."""
    return Rotation.from_quat(quat_xyzw).as_matrix()


def matrix_to_quat(rotation: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix -> quaternion (x, y, z, w) with w >= 0."""
    q = Rotation.from_matrix(rotation).as_quat()
    return -q if q[3] < 0 else q


def angle_between_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two vectors in degrees."""
    c = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Pinhole camera matrix."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def project(K: np.ndarray, camera_T_base: np.ndarray, points_base: np.ndarray) -> np.ndarray:
    """Project Nx3 base-frame points to Nx2 pixels (OpenCV optical camera frame)."""
    pc = transform_points(camera_T_base, np.atleast_2d(points_base))
    uv = pc @ K.T
    return uv[:, :2] / uv[:, 2:3]


def backproject(K: np.ndarray, uv: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Pixels (Nx2) with z-depth (N) -> Nx3 points in the camera optical frame."""
    uv = np.atleast_2d(uv)
    x = (uv[:, 0] - K[0, 2]) / K[0, 0] * z
    y = (uv[:, 1] - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z], axis=1)


def depth_to_points(K: np.ndarray, depth: np.ndarray, stride: int = 1,
                    mask: np.ndarray | None = None, sampled: bool = False) -> np.ndarray:
    """Depth image (metres, NaN = none) -> Nx3 points in the camera optical frame, from
    every ``stride``-th pixel; ``sampled``: ``depth`` holds only those pixels already."""
    d = depth if sampled else depth[::stride, ::stride]
    v, u = np.mgrid[0:d.shape[0] * stride:stride, 0:d.shape[1] * stride:stride]
    valid = np.isfinite(d) & (d > 0)
    if mask is not None:
        valid &= mask[::stride, ::stride]
    uv = np.stack([u[valid], v[valid]], axis=1).astype(float)
    return backproject(K, uv, d[valid].astype(float))


def fit_plane_ransac(points: np.ndarray, threshold: float, iterations: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray]:
    """RANSAC plane then least-squares refit on the inliers.

    Returns (unit normal, offset d with n.p + d = 0, inlier mask). Implemented here rather
    than with open3d's segment_plane because that one draws from a global, thread-parallel
    random state, which would break bit-exact replay.
    """
    n_pts = len(points)
    if n_pts < 3:
        raise ValueError(f"plane fit needs at least 3 points, got {n_pts}")
    best = np.zeros(n_pts, dtype=bool)
    for _ in range(iterations):
        a, b, c = points[rng.choice(n_pts, 3, replace=False)]
        n = np.cross(b - a, c - a)
        norm = np.linalg.norm(n)
        if norm < 1e-12:
            continue
        n /= norm
        inliers = np.abs((points - a) @ n) < threshold
        if inliers.sum() > best.sum():
            best = inliers
    if best.sum() < 3:
        best = np.ones(n_pts, dtype=bool)
    sel = points[best]
    centroid = sel.mean(axis=0)
    _, _, vt = np.linalg.svd(sel - centroid, full_matrices=False)
    normal = vt[2]
    return normal, float(-normal @ centroid), best


def tool_orientation(outward_normal: np.ndarray, reference_x: np.ndarray) -> np.ndarray:
    """Vertical tapping rule: the tool z axis points into the surface along the normal.

    The tool x axis is the reference x projected onto the tangent plane, so the wrist turns
    as little as possible. Returns a quaternion (x, y, z, w).
    """
    z = -outward_normal / np.linalg.norm(outward_normal)
    x = reference_x - (reference_x @ z) * z
    if np.linalg.norm(x) < 1e-6:
        x = np.array([1.0, 0.0, 0.0]) - z[0] * z
        if np.linalg.norm(x) < 1e-6:
            x = np.array([0.0, 1.0, 0.0]) - z[1] * z
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return matrix_to_quat(np.stack([x, y, z], axis=1))


def polyline_distances(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Distance of every point (N x 3) to the nearest segment of a polyline (M x 3)."""
    points = np.atleast_2d(points)
    if len(polyline) == 1:
        return np.linalg.norm(points - polyline[0], axis=1)
    nearest = np.full(len(points), np.inf)
    for a, b in zip(polyline[:-1], polyline[1:], strict=True):
        ab = b - a
        denom = float(ab @ ab)
        s = (np.zeros(len(points)) if denom < 1e-12
             else np.clip((points - a) @ ab / denom, 0.0, 1.0))
        nearest = np.minimum(nearest, np.linalg.norm(points - (a + s[:, None] * ab), axis=1))
    return nearest


def outside_capsules(points: np.ndarray, chain: np.ndarray, radius_m: float) -> np.ndarray:
    """Mask of the points farther than ``radius_m`` from every segment of a polyline chain."""
    outside = np.ones(len(points), dtype=bool)
    # only points in the chain's bounding box grown by the radius can be inside a capsule:
    # the arm covers a corner of the view, and the full distance test is the costly part
    low, high = chain.min(axis=0) - radius_m, chain.max(axis=0) + radius_m
    near = np.flatnonzero(np.all((points >= low) & (points <= high), axis=1))
    if len(near):
        outside[near] = polyline_distances(points[near], chain) > radius_m
    return outside
