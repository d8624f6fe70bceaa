"""pose-fit: pixels + depth -> 3D target, surface normal and tool orientation (base frame)."""

from __future__ import annotations

import numpy as np
from scipy.interpolate import make_splprep
from scipy.spatial import cKDTree
from tuina.operators.geometry import (
    backproject,
    depth_to_points,
    fit_plane_ransac,
    tool_orientation,
    transform_points,
)


class NoDepthError(ValueError):
    """No valid depth around the requested pixel."""


def _window(depth: np.ndarray, uv: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = depth.shape
    u, v = int(round(uv[0])), int(round(uv[1]))
    u0, u1, v0, v1 = max(u - half, 0), min(u + half + 1, w), max(v - half, 0), min(v + half + 1, h)
    if u0 >= u1 or v0 >= v1:
        raise NoDepthError(f"pixel ({uv[0]:.0f}, {uv[1]:.0f}) is outside the {w}x{h} image")
    vv, uu = np.mgrid[v0:v1, u0:u1]
    return np.stack([uu.ravel(), vv.ravel()], axis=1).astype(float), depth[v0:v1, u0:u1].ravel()


def point_at_pixel(depth: np.ndarray, K: np.ndarray, base_T_camera: np.ndarray,
                   uv: np.ndarray, half_window: int = 3, max_half_window: int = 15) -> np.ndarray:
    """3D base-frame point at a pixel: median depth of the valid neighbourhood.

    The window grows until it holds valid depth, so a hole at the target is bridged by
    its neighbours; with none up to ``max_half_window`` it raises NoDepthError.
    """
    half = half_window
    while half <= max_half_window:
        pix, z = _window(depth, uv, half)
        valid = np.isfinite(z) & (z > 0)
        if valid.sum() >= 3:
            # the plane through the neighbourhood, evaluated at the exact pixel, beats the
            # median on a slope
            pts = backproject(K, pix[valid], z[valid])
            centroid = pts.mean(axis=0)
            _, _, vt = np.linalg.svd(pts - centroid, full_matrices=False)
            n = vt[2]
            ray = np.array([(uv[0] - K[0, 2]) / K[0, 0], (uv[1] - K[1, 2]) / K[1, 1], 1.0])
            denom = ray @ n
            z_hit = (centroid @ n) / denom if abs(denom) > 1e-6 else float(np.median(z[valid]))
            if not np.isfinite(z_hit) or abs(z_hit - np.median(z[valid])) > 0.02:
                z_hit = float(np.median(z[valid]))
            p_cam = backproject(K, np.asarray(uv, float)[None], np.array([z_hit]))[0]
            return transform_points(base_T_camera, p_cam[None])[0]
        half *= 2
    raise NoDepthError(f"no valid depth within {max_half_window} px of pixel "
                       f"({uv[0]:.0f}, {uv[1]:.0f}); move the camera or the target into view")


def surface_normal(depth: np.ndarray, K: np.ndarray, base_T_camera: np.ndarray,
                   uv: np.ndarray, rng: np.random.Generator, half_patch: int = 10,
                   threshold: float = 0.002) -> np.ndarray:
    """Outward unit normal (base frame) of a RANSAC plane through a depth patch."""
    pix, z = _window(depth, uv, half_patch)
    valid = np.isfinite(z) & (z > 0)
    if valid.sum() < 10:
        raise NoDepthError(f"only {int(valid.sum())} valid depth pixels around "
                           f"({uv[0]:.0f}, {uv[1]:.0f}); cannot fit a surface normal")
    pts = transform_points(base_T_camera, backproject(K, pix[valid], z[valid]))
    normal, _, _ = fit_plane_ransac(pts, threshold, 60, rng)
    to_camera = base_T_camera[:3, 3] - pts.mean(axis=0)
    return normal if normal @ to_camera > 0 else -normal


def target_orientation(normal: np.ndarray, reference_x: np.ndarray) -> np.ndarray:
    """Tool quaternion by the vertical tapping rule (tool z into the surface)."""
    return tool_orientation(normal, reference_x)


def stroke_path(depth: np.ndarray, K: np.ndarray, base_T_camera: np.ndarray,
                stroke_px: np.ndarray, spacing_m: float, clean_radius_m: float = 0.01,
                stride: int = 2) -> np.ndarray:
    """A drawn 2D stroke -> 3D surface path (VBRM Eq. 5, Fig. 5), resampled by arc length.

    Every pixel of the densified polyline is back-projected; each 3D point is snapped to
    its nearest neighbour in the body cloud (dropping points with none within
    ``clean_radius_m``); a least-squares cubic B-spline through the cleaned points is
    resampled every ``spacing_m``.
    """
    stroke_px = np.asarray(stroke_px, float).reshape(-1, 2)
    if len(stroke_px) < 2:
        raise ValueError("a stroke needs at least two pixels")
    seg = np.linalg.norm(np.diff(stroke_px, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    dense = np.stack([np.interp(np.arange(0, s[-1] + 1e-9, 1.0), s, stroke_px[:, i])
                      for i in range(2)], axis=1)
    h, w = depth.shape
    ui = np.clip(np.rint(dense[:, 0]).astype(int), 0, w - 1)
    vi = np.clip(np.rint(dense[:, 1]).astype(int), 0, h - 1)
    z = depth[vi, ui]
    ok = np.isfinite(z) & (z > 0)
    if ok.sum() < 4:
        raise NoDepthError("the stroke has fewer than 4 pixels with valid depth")
    raw = transform_points(base_T_camera, backproject(K, dense[ok], z[ok]))
    cloud = transform_points(base_T_camera, depth_to_points(K, depth, stride=stride))
    dist, idx = cKDTree(cloud).query(raw)
    cleaned = cloud[idx[dist < clean_radius_m]]
    _, first = np.unique(idx[dist < clean_radius_m], return_index=True)
    cleaned = cleaned[np.sort(first)]
    if len(cleaned) < 4:
        raise NoDepthError("fewer than 4 stroke points lie on the body cloud")
    length = float(np.sum(np.linalg.norm(np.diff(cleaned, axis=0), axis=1)))
    spline, _ = make_splprep(cleaned.T, k=3, s=len(cleaned) * (0.002**2))
    fine = np.asarray(spline(np.linspace(0, 1, 400))).T
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(fine, axis=0), axis=1))])
    n_out = max(2, int(round(min(arc[-1], length * 1.5) / spacing_m)) + 1)
    targets = np.linspace(0.0, arc[-1], n_out)
    return np.stack([np.interp(targets, arc, fine[:, i]) for i in range(3)], axis=1)
