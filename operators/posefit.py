"""pose-fit: pixels + depth -> 3D target, surface normal and tool orientation (base frame)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import make_splprep
from scipy.spatial import cKDTree
from tuina.operators.geometry import (
    angle_between_deg,
    backproject,
    fit_plane_ransac,
    tool_orientation,
    transform_points,
)

# skin the normal is fitted on (3D radius, at up to 1 m range). On the D455's correlated noise
# 20 mm gave a 4.2 deg mean normal error over the nine perception targets, 15 mm 5.6 deg
NORMAL_RADIUS_M = 0.02


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


def _pixels_for(K: np.ndarray, z: float, radius_m: float, limit: int = 40) -> int:
    """Half window (px) that spans ``radius_m`` at depth ``z``."""
    return int(np.clip(round(radius_m * K[0, 0] / z), 1, limit))


def _valid_window(depth: np.ndarray, uv: np.ndarray, half: int, max_half: int,
                  min_valid: int) -> tuple[np.ndarray, np.ndarray]:
    """The smallest window from ``half`` up (doubling) holding ``min_valid`` depth pixels."""
    while True:
        pix, z = _window(depth, uv, half)
        valid = np.isfinite(z) & (z > 0)
        if valid.sum() >= min_valid:
            return pix[valid], z[valid].astype(float)
        if half >= max_half:
            raise NoDepthError(f"no valid depth within {max_half} px of pixel "
                               f"({uv[0]:.0f}, {uv[1]:.0f}); move the camera or the target "
                               "into view")
        half = min(2 * half, max_half)


def point_at_pixel(depth: np.ndarray, K: np.ndarray, base_T_camera: np.ndarray,
                   uv: np.ndarray, radius_m: float = 0.005, min_half_window: int = 4,
                   max_half_window: int = 15) -> np.ndarray:
    """3D base-frame point at a (sub-)pixel from the depth of its neighbourhood.

    Depth over the neighbourhood (``radius_m`` on the skin, at least ``min_half_window``
    px) is fitted with a quadratic surface in the pixel offsets, robustly (one refit
    without the 3-sigma outliers), and evaluated at the exact pixel: curvature of a limb
    does not bias it and single noisy pixels barely move it. The window grows until it
    holds valid depth, so a hole at the target is bridged by its neighbours; with none up
    to ``max_half_window`` it raises NoDepthError.
    """
    uv = np.asarray(uv, float)
    _, z_near = _valid_window(depth, uv, 1, max_half_window, 1)
    half = max(min_half_window, _pixels_for(K, float(np.median(z_near)), radius_m,
                                            max_half_window))
    pix, z = _valid_window(depth, uv, min(half, max_half_window), max_half_window, 12)
    du, dv = pix[:, 0] - uv[0], pix[:, 1] - uv[1]
    design = np.stack([np.ones_like(du), du, dv, du * du, du * dv, dv * dv], axis=1)
    keep = np.ones(len(z), dtype=bool)
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(design[keep], z[keep], rcond=None)
        residual = np.abs(design @ coef - z)
        mad = float(np.median(residual[keep]))
        keep = residual <= max(3.0 * 1.4826 * mad, 1e-4)
        if keep.sum() < 12:
            break
    z_hit = float(coef[0])
    if not np.isfinite(z_hit) or abs(z_hit - np.median(z)) > 0.02:
        z_hit = float(np.median(z))
    p_cam = backproject(K, uv[None], np.array([z_hit]))[0]
    return transform_points(base_T_camera, p_cam[None])[0]


def surface_normal(depth: np.ndarray, K: np.ndarray, base_T_camera: np.ndarray,
                   uv: np.ndarray, rng: np.random.Generator,
                   radius_m: float = NORMAL_RADIUS_M,
                   min_threshold_m: float = 0.001, full_range_m: float = 1.0) -> np.ndarray:
    """Outward unit normal (base frame) of a RANSAC plane through a disc of the surface.

    The disc holds the depth points within ``radius_m`` (3D) of the point at the pixel, so
    it covers the same skin at any range and never reaches the table beside a limb. Beyond
    ``full_range_m`` it grows as (range / full_range_m)^1.5: a stereo camera's depth noise
    grows with the square of the range and its pixels' footprint with the range, so the
    plane's tilt noise (noise / (radius * sqrt(points))) would grow with its cube. The
    RANSAC inlier distance follows the noise: three robust standard deviations of the
    residuals of a first least-squares plane, at least ``min_threshold_m``.
    """
    centre = point_at_pixel(depth, K, base_T_camera, uv)
    z_centre = transform_points(np.linalg.inv(base_T_camera), centre[None])[0, 2]
    radius_m *= max(1.0, float(z_centre) / full_range_m) ** 1.5
    # the window is wide enough for a disc seen at up to ~70 deg from its normal
    half = _pixels_for(K, z_centre, 3.0 * radius_m, 60)
    pix, z = _window(depth, uv, half)
    valid = np.isfinite(z) & (z > 0)
    pts = transform_points(base_T_camera, backproject(K, pix[valid], z[valid]))
    pts = pts[np.linalg.norm(pts - centre, axis=1) < radius_m]
    if len(pts) < 10:
        raise NoDepthError(f"only {len(pts)} valid depth points within {radius_m * 1e3:.0f} mm"
                           f" of ({uv[0]:.0f}, {uv[1]:.0f}); cannot fit a surface normal")
    centroid = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - centroid, full_matrices=False)
    residual = np.abs((pts - centroid) @ vt[2])
    threshold = max(min_threshold_m, 3.0 * 1.4826 * float(np.median(residual)))
    normal, _, _ = fit_plane_ransac(pts, threshold, 60, rng)
    to_camera = base_T_camera[:3, 3] - pts.mean(axis=0)
    return normal if normal @ to_camera > 0 else -normal


def fit_target(depth: np.ndarray, K: np.ndarray, base_T_camera: np.ndarray, uv: np.ndarray,
               rng: np.random.Generator, point_radius_m: float = 0.005,
               normal_radius_m: float = NORMAL_RADIUS_M) -> tuple[np.ndarray, np.ndarray]:
    """Surface point and outward normal (base frame) at a pixel."""
    point = point_at_pixel(depth, K, base_T_camera, uv, point_radius_m)
    normal = surface_normal(depth, K, base_T_camera, uv, rng, normal_radius_m)
    return point, normal


def target_orientation(normal: np.ndarray, reference_x: np.ndarray) -> np.ndarray:
    """Tool quaternion by the vertical tapping rule (tool z into the surface)."""
    return tool_orientation(normal, reference_x)


class StrokeOffBody(ValueError):
    """The drawn stroke runs off the body (onto the table or the background)."""


def stroke_path(depth: np.ndarray, K: np.ndarray, base_T_camera: np.ndarray,
                stroke_px: np.ndarray, body_base: np.ndarray, spacing_m: float,
                clean_radius_m: float = 0.01, max_off_body: float = 0.1) -> np.ndarray:
    """A drawn 2D stroke -> 3D surface path (VBRM Eq. 5, Fig. 5), resampled by arc length.

    Every pixel of the densified polyline with depth is back-projected (Eq. 5); each 3D
    point is snapped to its nearest neighbour in the body cloud (table already removed). A
    stroke with more than ``max_off_body`` of its points farther than ``clean_radius_m``
    from the body raises StrokeOffBody; the rest are dropped as outliers. A least-squares
    cubic B-spline through the cleaned points is resampled every ``spacing_m``.
    """
    stroke_px = np.asarray(stroke_px, float).reshape(-1, 2)
    if len(stroke_px) < 2:
        raise ValueError("a stroke needs at least two pixels")
    if len(body_base) < 4:
        raise StrokeOffBody("no body points in view to draw the stroke on")
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
        raise NoDepthError(f"only {int(ok.sum())} stroke pixels have depth (need 4); "
                           "draw the stroke where the camera sees the body")
    raw = transform_points(base_T_camera, backproject(K, dense[ok], z[ok]))
    dist, idx = cKDTree(body_base).query(raw)
    on_body = dist < clean_radius_m
    if (~on_body).mean() > max_off_body:
        u, v = dense[ok][np.argmax(~on_body)]
        raise StrokeOffBody(f"the stroke leaves the body at pixel ({u:.0f}, {v:.0f}): "
                            f"{int((~on_body).sum())} of {len(raw)} points are off the body; "
                            "redraw it on the body")
    _, first = np.unique(idx[on_body], return_index=True)
    cleaned = body_base[idx[on_body][np.sort(first)]]
    if len(cleaned) < 4:
        raise StrokeOffBody("fewer than 4 stroke points lie on the body; draw a longer stroke")
    length = float(np.sum(np.linalg.norm(np.diff(cleaned, axis=0), axis=1)))
    spline, _ = make_splprep(cleaned.T, k=3, s=len(cleaned) * (0.002**2))
    fine = np.asarray(spline(np.linspace(0, 1, 400))).T
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(fine, axis=0), axis=1))])
    n_out = max(2, int(round(min(arc[-1], length * 1.5) / spacing_m)) + 1)
    targets = np.linspace(0.0, arc[-1], n_out)
    return np.stack([np.interp(targets, arc, fine[:, i]) for i in range(3)], axis=1)


# --- how well a target is known -----------------------------------------------------------

class UntrustedTarget(ValueError):
    """The target is not known well enough to press: nothing may move."""


@dataclass(frozen=True)
class TrustConfig:
    """When a depth fit is trusted, when a registered model's surface replaces it."""

    max_view_deg: float = 60.0  # a surface seen more obliquely: the depth fit is unreliable
    max_disagree_m: float = 0.006  # depth fit against the registered model's point
    max_disagree_deg: float = 15.0  # and normal
    max_model_rmse_m: float = 0.006  # a registration fitting worse is not trusted either


@dataclass(frozen=True)
class TrustedSurface:
    """The surface point and normal a target is pressed at, and where they come from."""

    point: np.ndarray
    normal: np.ndarray
    surface: str  # depth | model
    view_angle_deg: float
    why: str  # one line: how it was decided


def view_angle_deg(point: np.ndarray, normal: np.ndarray, camera: np.ndarray) -> float:
    """Angle between the outward normal and the line from the point to the camera."""
    return angle_between_deg(normal, np.asarray(camera, float) - point)


def trust_surface(depth_fit: tuple[np.ndarray, np.ndarray] | None, camera: np.ndarray,
                  model_point: np.ndarray | None, model_normal: np.ndarray | None,
                  model_rmse_m: float, cfg: TrustConfig) -> TrustedSurface:
    """Decide where to press: the depth fit when it is seen well and (if the backend knows
    the surface) agrees with the registered model; the model's point and normal when the
    registration fits well but the camera sees the point badly; else UntrustedTarget with
    the reason and a remedy. ``depth_fit`` is None when depth gave no fit at all."""
    has_model = model_point is not None and model_normal is not None
    model_ok = has_model and np.isfinite(model_rmse_m) and model_rmse_m <= cfg.max_model_rmse_m
    if depth_fit is None:
        seen = "no depth fit"
    else:
        point, normal = (np.asarray(v, float) for v in depth_fit)
        angle = view_angle_deg(point, normal, camera)
        off_m = float(np.linalg.norm(point - model_point)) if has_model else 0.0
        off_deg = angle_between_deg(normal, model_normal) if has_model else 0.0
        if angle > cfg.max_view_deg:
            seen = f"seen at {angle:.0f} deg from the camera (at most {cfg.max_view_deg:.0f})"
        elif off_m > cfg.max_disagree_m or off_deg > cfg.max_disagree_deg:
            seen = (f"the depth fit is {off_m * 1000:.0f} mm and {off_deg:.0f} deg from the "
                    "registered model")
        else:
            agrees = ", agrees with the registered model" if has_model else ""
            return TrustedSurface(point, normal, "depth", angle,
                                  f"depth fit, seen at {angle:.0f} deg{agrees}")
    if model_ok:
        mp, mn = np.asarray(model_point, float), np.asarray(model_normal, float)
        mn = mn / np.linalg.norm(mn)
        return TrustedSurface(mp, mn, "model", view_angle_deg(mp, mn, camera),
                              f"{seen}: pressed at the registered model's surface "
                              f"({model_rmse_m * 1000:.1f} mm RMS fit)")
    if has_model:
        seen += (f", and the body model's registration fits {model_rmse_m * 1000:.1f} mm RMS "
                 f"(at most {cfg.max_model_rmse_m * 1000:.0f} mm)")
    raise UntrustedTarget(f"{seen}: not pressed; move the camera so it faces the point, or "
                          "turn the body toward the camera")


def ball_intrusion(point: np.ndarray, normal: np.ndarray, body_points: np.ndarray,
                   radius_m: float, min_points: int = 5) -> tuple[float, float]:
    """How far the body reaches into a ball of ``radius_m`` resting on the surface at
    ``point`` (its centre one radius out along the normal), as deep as its
    ``min_points``-th deepest body point, and how far from the point that happens:
    (depth, distance) in m; (0, 0) when the ball fits. A ball that does not fit (a hollow,
    a fold) presses somewhere else first."""
    centre = np.asarray(point, float) + radius_m * np.asarray(normal, float) / np.linalg.norm(
        normal)
    if len(body_points) == 0:
        return 0.0, 0.0
    d = np.linalg.norm(np.asarray(body_points, float) - centre, axis=1)
    # the body must reach in with several points: one noisy depth point is not a hollow
    k = int(np.argsort(d)[min(min_points, len(d)) - 1])
    depth = radius_m - float(d[k])
    if depth <= 0:
        return 0.0, 0.0
    return depth, float(np.linalg.norm(body_points[k] - point))
