"""Atlas grounding: register the known phantom to the observed cloud, project acupoints."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np
import open3d as o3d
from tuina.operators.geometry import (
    depth_to_points,
    fit_plane_ransac,
    project,
    transform_points,
)
from tuina.operators.phantom import (
    ATLAS,
    POINT_SIDES,
    Acupoint,
    approach_clearance,
    ball_intrusion_model,
    is_bilateral,
    placement,
    right_side,
    surface_samples,
)


class GroundingError(ValueError):
    """The target cannot be grounded in this frame."""


@dataclass(frozen=True)
class PhantomFit:
    """Where the phantom lies: base_T_body, and how well the camera's view agrees with it:
    ``fitness`` (share of body points within reach of the model), ``agreement`` (share of
    the model's visible surface the depth confirms rather than sees past), and ``runner_up``
    (the score of the best distinct answer, 0 when none)."""

    base_T_body: np.ndarray
    fitness: float
    inlier_rmse: float
    agreement: float = 1.0
    runner_up: float = 0.0

    @property
    def score(self) -> float:
        """Fitness times agreement: what tells one answer from another."""
        return self.fitness * self.agreement


@dataclass(frozen=True)
class RegistrationSearch:
    """How far from the expected pose the phantom is looked for, and what answer is trusted.

    Hypotheses: every heading offset times every x/y shift, turned about the cloud's
    centroid; each is aligned coarsely, the best few finely, then scored on the view. An
    answer is refused when its score is under ``min_fitness``/``min_agreement``, or when a
    distinct answer (an acupoint more than ``same_pose_mm`` apart) scores within
    ``ambiguity_margin`` of it."""

    yaw_offsets_deg: tuple[float, ...] = (-30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0)
    shift_offsets_m: tuple[float, ...] = (-0.06, 0.0, 0.06)
    coarse_voxel_m: float = 0.02
    coarse_distance_m: float = 0.06
    coarse_iterations: int = 15
    refined: int = 6
    fine_voxel_m: float = 0.008
    fine_distances_m: tuple[float, ...] = (0.025, 0.012)
    fine_iterations: int = 30
    inlier_m: float = 0.01
    view_tolerance_m: float = 0.015
    min_fitness: float = 0.8
    min_agreement: float = 0.85
    ambiguity_margin: float = 0.05
    same_pose_mm: float = 10.0


def remove_table(points: np.ndarray, rng: np.random.Generator,
                 threshold: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """Drop the dominant plane (the table) and everything below it.

    Returns the remaining points and the table plane (a, b, c, d), normal pointing up.
    """
    normal, d, _ = fit_plane_ransac(points, threshold, 100, rng)
    if normal[2] < 0:
        normal, d = -normal, -d
    height = points @ normal + d
    return points[height > threshold * 1.5], np.append(normal, d)


@lru_cache(maxsize=4)
def _model(spacing: float) -> tuple[np.ndarray, np.ndarray, o3d.geometry.PointCloud]:
    """The phantom's visible-side samples and the ICP target built on them (body frame)."""
    pts, nrm = surface_samples(spacing=spacing)
    target = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    target.normals = o3d.utility.Vector3dVector(nrm)
    return pts, nrm, target


def _icp(source: o3d.geometry.PointCloud, target: o3d.geometry.PointCloud,
         base_T_body: np.ndarray, distance: float, iterations: int) -> np.ndarray:
    """Point-to-plane ICP of base-frame points onto the body-frame model: base_T_body."""
    result = o3d.pipelines.registration.registration_icp(
        source, target, distance, np.linalg.inv(base_T_body),
        o3d.pipelines.registration.TransformationEstimationPointToPlane(),
        o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=iterations))
    return np.linalg.inv(result.transformation)


def _evaluate(source: o3d.geometry.PointCloud, target: o3d.geometry.PointCloud,
              base_T_body: np.ndarray, distance: float) -> tuple[float, float]:
    """Fitness and inlier RMSE of base-frame points against the model at ``base_T_body``."""
    result = o3d.pipelines.registration.evaluate_registration(
        source, target, distance, np.linalg.inv(base_T_body))
    return float(result.fitness), float(result.inlier_rmse)


def view_agreement(base_T_body: np.ndarray, depth: np.ndarray, K: np.ndarray,
                   base_T_camera: np.ndarray, tolerance_m: float = 0.015,
                   spacing: float = 0.01) -> float:
    """Of the model surface the camera would see with the body at ``base_T_body``, the share
    the depth confirms (within ``tolerance_m``) rather than sees past (the table where the
    body should be). Pixels nearer than the model (the arm in front) or without depth say
    nothing."""
    pts, nrm, _ = _model(spacing)
    P = transform_points(base_T_body, pts)
    N = nrm @ base_T_body[:3, :3].T
    facing = np.einsum("ij,ij->i", N, base_T_camera[:3, 3] - P) > 0
    pc = transform_points(np.linalg.inv(base_T_camera), P[facing])
    pc = pc[pc[:, 2] > 0.05]
    uv = np.rint((pc @ K.T)[:, :2] / pc[:, 2:3]).astype(int)
    h, w = depth.shape
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    seen = depth[uv[inside, 1], uv[inside, 0]]
    expected = pc[inside, 2]
    agree = int(np.sum(np.abs(seen - expected) <= tolerance_m))
    through = int(np.sum(seen > expected + tolerance_m))
    return agree / (agree + through) if agree + through else 0.0


_ACUPOINTS = np.array([p.position for p in POINT_SIDES])  # body frame, every side


def acupoint_shift_mm(a: np.ndarray, b: np.ndarray) -> float:
    """The largest distance any acupoint moves between body poses ``a`` and ``b``."""
    return float(np.max(np.linalg.norm(transform_points(a, _ACUPOINTS)
                                       - transform_points(b, _ACUPOINTS), axis=1))) * 1e3


def register_phantom(observed_base: np.ndarray, expected_base_T_body: np.ndarray,
                     depth: np.ndarray, K: np.ndarray, base_T_camera: np.ndarray,
                     search: RegistrationSearch = RegistrationSearch()) -> PhantomFit:
    """Find the phantom in the body cloud from around its expected pose, or GroundingError
    when no answer can be trusted (a poor fit, a view that contradicts it, or two distinct
    answers that measure alike): never a confident wrong pose."""
    if len(observed_base) < 200:
        raise GroundingError(f"only {len(observed_base)} body points in view; the phantom "
                             "must be visible to the camera")
    source = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(observed_base))
    coarse_src = source.voxel_down_sample(search.coarse_voxel_m)
    fine_src = source.voxel_down_sample(search.fine_voxel_m)
    _, _, target = _model(search.fine_voxel_m)
    centre = np.asarray(observed_base).mean(axis=0)
    coarse = []
    for yaw in search.yaw_offsets_deg:
        turn = placement((0.0, 0.0, 0.0), yaw)
        turn[:3, 3] = centre - turn[:3, :3] @ centre
        for dx in search.shift_offsets_m:
            for dy in search.shift_offsets_m:
                start = turn @ expected_base_T_body
                start[:2, 3] += (dx, dy)
                T = _icp(coarse_src, target, start, search.coarse_distance_m,
                         search.coarse_iterations)
                coarse.append((_evaluate(coarse_src, target, T, search.coarse_voxel_m)[0], T))
    coarse.sort(key=lambda c: -c[0])
    fits: list[PhantomFit] = []
    for _, T in coarse:
        if len(fits) >= search.refined:
            break
        if any(acupoint_shift_mm(T, f.base_T_body) < search.same_pose_mm for f in fits):
            continue
        for distance in search.fine_distances_m:
            T = _icp(fine_src, target, T, distance, search.fine_iterations)
        fitness, rmse = _evaluate(fine_src, target, T, search.inlier_m)
        fits.append(PhantomFit(T, fitness, rmse, view_agreement(
            T, depth, K, base_T_camera, search.view_tolerance_m)))
    fits.sort(key=lambda f: -f.score)
    best = fits[0]
    rivals = [f.score for f in fits[1:]
              if acupoint_shift_mm(f.base_T_body, best.base_T_body) >= search.same_pose_mm]
    best = replace(best, runner_up=max(rivals, default=0.0))
    if best.fitness < search.min_fitness:
        raise GroundingError(f"the phantom model matches only {best.fitness:.0%} of the body "
                             f"cloud (at least {search.min_fitness:.0%} needed); set "
                             "BODY_POSITION/BODY_YAW_DEG near where the body lies")
    if best.agreement < search.min_agreement:
        raise GroundingError(f"the camera sees past {1 - best.agreement:.0%} of where the "
                             "best-fitting body would be; set BODY_POSITION/BODY_YAW_DEG near "
                             "where the body lies, or clear the view")
    if best.runner_up >= best.score - search.ambiguity_margin:
        raise GroundingError(f"the body cloud fits two poses alike (scores {best.score:.2f} "
                             f"and {best.runner_up:.2f}); not pressed; set BODY_POSITION/"
                             "BODY_YAW_DEG near where the body lies")
    return best


@lru_cache(maxsize=1)
def _skin(spacing: float = 0.002) -> tuple[np.ndarray, np.ndarray]:
    """The phantom's whole surface, densely sampled (body frame): points and normals."""
    return surface_samples(spacing=spacing, min_up=-1.0)


def acupoint_box(point: Acupoint, base_T_body: np.ndarray, K: np.ndarray,
                 camera_T_base: np.ndarray, radius_m: float = 0.015) -> np.ndarray:
    """Image box (x1, y1, x2, y2) of the skin within ``radius_m`` of the acupoint that faces
    the camera (the model's surface at the pose ``base_T_body``), pixel edges included."""
    pts, nrm = _skin()
    near = np.linalg.norm(pts - point.position, axis=1) <= radius_m
    patch = transform_points(base_T_body, pts[near])
    normals = nrm[near] @ base_T_body[:3, :3].T
    eye = np.linalg.inv(camera_T_base)[:3, 3]
    facing = np.einsum("ij,ij->i", normals, eye - patch) > 0
    if facing.any():
        patch = patch[facing]
    uv = project(K, camera_T_base, patch)
    return np.array([uv[:, 0].min() - 0.5, uv[:, 1].min() - 0.5, uv[:, 0].max() + 0.5,
                     uv[:, 1].max() + 0.5])


def stroke_pixels(point: Acupoint, base_T_body: np.ndarray, K: np.ndarray,
                  camera_T_base: np.ndarray, length_m: float, n: int = 8) -> np.ndarray:
    """Pixels of a stroke along the limb (or trunk) starting at the acupoint."""
    pts = point.position + np.linspace(0.0, length_m, n)[:, None] * point.stroke_dir
    return project(K, camera_T_base, transform_points(base_T_body, pts))


@dataclass(frozen=True)
class GroundedAcupoint:
    """An acupoint found in one frame: image box, pixel centre, and the phantom fit."""

    box: np.ndarray  # x1, y1, x2, y2 (px)
    centre_px: np.ndarray
    fit: PhantomFit


def body_cloud(depth: np.ndarray, K: np.ndarray, base_T_camera: np.ndarray,
               roi_min: np.ndarray, roi_max: np.ndarray, rng: np.random.Generator,
               stride: int = 2) -> np.ndarray:
    """Base-frame points of the body: depth inside the region of interest, table removed."""
    pts = transform_points(base_T_camera, depth_to_points(K, depth, stride=stride))
    roi = np.all((pts >= roi_min) & (pts <= roi_max), axis=1)
    if roi.sum() < 3:
        raise GroundingError(f"only {int(roi.sum())} depth points inside the region of "
                             "interest; check ROI_MIN/ROI_MAX and the camera extrinsics")
    body, _ = remove_table(pts[roi], rng)
    return body


def ball_fit_problem(point: Acupoint, radius_m: float, clearance_m: float) -> str:
    """Why the massage ball cannot press ``point`` on the body model (another part of the
    body reaches more than ``clearance_m`` into the ball resting there: it would press that
    part first), or "" when it can."""
    depth, part = ball_intrusion_model(point, radius_m)
    if depth <= clearance_m:
        return ""
    return (f"the {radius_m * 2000:.0f} mm ball does not fit the body at {point.code}: the "
            f"{part.replace('_', ' ')} reaches {depth * 1000:.1f} mm into it and would be "
            "pressed first; not pressed; choose a point nearby or a smaller ball")


def approach_problem(point: Acupoint, ball_radius_m: float, corridor_m: float,
                     length_m: float) -> str:
    """Why the tool cannot come in to ``point`` along its normal on the body model (another
    part of the body passes within ``corridor_m`` of that line, from just past the ball out to
    ``length_m``: the tool would strike it), or "" when the way in is clear."""
    clearance, part = approach_clearance(point, 2 * ball_radius_m + 0.005, length_m)
    if clearance >= corridor_m:
        return ""
    return (f"the tool's way in to {point.code} along the surface normal passes "
            f"{max(clearance, 0.0) * 1000:.0f} mm from the {part.replace('_', ' ')} (it needs "
            f"{corridor_m * 1000:.0f} mm): the tool would strike it; not pressed; turn the body "
            "so the point faces the arm, or choose another point")


def check_posture(point: Acupoint, posture: str) -> None:
    """GroundingError unless ``point`` is reached in the posture the body lies in."""
    if point.posture != posture:
        reachable = ", ".join(a.code for a in ATLAS if a.posture == posture)
        raise GroundingError(f"{point.code} ({point.pinyin}) is reached {point.posture} and the "
                             f"body lies {posture} (BODY_POSTURE); turn the person and set "
                             f"BODY_POSTURE: {point.posture}, or choose a {posture} point: "
                             f"{reachable}")


def facing_the_arm(positions: np.ndarray, normals: np.ndarray, margin: float = 0.3) -> int:
    """Of a point's two sides (base-frame positions and outward normals), the index of the one
    whose surface faces the arm's base (the base frame's origin) clearly more, by ``margin`` in
    the horizontal part of the normal along the way to the base; when neither does, the
    nearer one."""
    faces, nears = [], []
    for position, normal in zip(positions, normals, strict=True):
        way = -position[:2] / max(float(np.linalg.norm(position[:2])), 1e-9)
        faces.append(float(normal[:2] @ way))
        nears.append(float(np.linalg.norm(position[:2])))
    if abs(faces[0] - faces[1]) > margin:
        return 0 if faces[0] > faces[1] else 1
    return 0 if nears[0] <= nears[1] else 1


def side_facing_arm(point: Acupoint, base_T_body: np.ndarray, margin: float = 0.3) -> Acupoint:
    """Of an atlas point's two sides (``point`` is the left), the one whose surface faces the
    arm's base more (``facing_the_arm``; Sanyinjiao, on the shin's inner side: the far leg's).
    A midline point is itself."""
    if not is_bilateral(point):
        return point
    sides = [point, right_side(point)]
    R, t = base_T_body[:3, :3], base_T_body[:3, 3]
    return sides[facing_the_arm(np.array([R @ p.position + t for p in sides]),
                                np.array([R @ p.normal for p in sides]), margin)]


def ground_acupoint(point: Acupoint, body_base: np.ndarray, depth: np.ndarray, K: np.ndarray,
                    base_T_camera: np.ndarray, expected_base_T_body: np.ndarray,
                    ball_radius_m: float = 0.0, ball_clearance_m: float = 0.0,
                    approach_clearance_m: float = 0.0, approach_length_m: float = 0.15,
                    search: RegistrationSearch = RegistrationSearch()) -> GroundedAcupoint:
    """Find the phantom in the body cloud (``register_phantom``, from around its expected
    pose) and project the acupoint into the image; GroundingError when the registration
    cannot be trusted, or when, on the body model, the ball (``ball_radius_m`` > 0) cannot
    press the point or the tool's way in along the normal passes within
    ``approach_clearance_m`` of the body (> 0)."""
    if ball_radius_m > 0 and (problem := ball_fit_problem(point, ball_radius_m,
                                                          ball_clearance_m)):
        raise GroundingError(problem)
    if approach_clearance_m > 0 and (problem := approach_problem(
            point, ball_radius_m, approach_clearance_m, approach_length_m)):
        raise GroundingError(problem)
    fit = register_phantom(body_base, expected_base_T_body, depth, K, base_T_camera, search)
    camera_T_base = np.linalg.inv(base_T_camera)
    box = acupoint_box(point, fit.base_T_body, K, camera_T_base)
    centre = project(K, camera_T_base,
                     transform_points(fit.base_T_body, point.position[None]))[0]
    return GroundedAcupoint(box, centre, fit)


def validate_stroke(stroke_px: np.ndarray | list[float], width: int,
                    height: int) -> np.ndarray:
    """A drawn stroke as Nx2 pixels, or GroundingError naming what is wrong with it."""
    flat = np.asarray(stroke_px, float).ravel()
    if len(flat) % 2:
        raise GroundingError(f"the stroke has {len(flat)} coordinates; it needs u,v pairs")
    pts = flat.reshape(-1, 2)
    if len(pts) < 2:
        raise GroundingError(f"the stroke has {len(pts)} point(s); draw at least two")
    if not np.all(np.isfinite(pts)):
        raise GroundingError("the stroke holds NaN or infinite pixels; redraw it")
    if np.sum(np.linalg.norm(np.diff(pts, axis=0), axis=1)) < 2.0:
        raise GroundingError("the stroke is shorter than 2 px; draw a longer line")
    outside = (pts[:, 0] < 0) | (pts[:, 0] > width - 1) | (pts[:, 1] < 0) | (
        pts[:, 1] > height - 1)
    if outside.any():
        u, v = pts[np.argmax(outside)]
        raise GroundingError(f"stroke point ({u:.0f}, {v:.0f}) is outside the {width}x{height}"
                             " image; draw inside the image")
    return pts


def validate_click(point_px: np.ndarray | list[float], width: int, height: int) -> np.ndarray:
    """A point clicked on the image (u, v), or GroundingError naming what is wrong with it."""
    u, v = np.asarray(point_px, float).ravel()[:2]
    if not (np.isfinite(u) and np.isfinite(v)):
        raise GroundingError("the clicked point holds NaN or infinite pixels; click again")
    if not (0 <= u <= width - 1 and 0 <= v <= height - 1):
        raise GroundingError(f"the clicked point ({u:.0f}, {v:.0f}) is outside the "
                             f"{width}x{height} image; click on the body")
    return np.array([u, v])


@dataclass
class GroundingRequests:
    """Which instruction is grounded on which frame: the pending request, the last one (what
    a re-grounding asks again), and the model's answers that came too late. Instructions are
    duck-typed (``stroke_px``, ``text``); stamps are camera time in ns."""

    reground_delay_s: float
    max_answer_age_s: float
    max_stale_answers: int
    pending: Any = None
    last: Any = None
    not_before: int = 0  # depth stamp a pending re-grounding waits for
    newest: int = 0  # stamp of the newest input
    moved_at: int = 0  # stamp of the latest body motion the tracker reported
    stale: int = 0  # stale answers in a row

    def heard(self, stamp: int) -> None:
        self.newest = max(self.newest, stamp)

    def on_instruction(self, instruction: Any) -> None:
        self.pending, self.not_before = instruction, 0

    def on_reground(self, stamp: int) -> tuple[str, str] | None:
        """The body moved: ("error", why) when the last request cannot be asked again,
        ("say", line) when it will be, None when there is nothing to ask."""
        last = self.last
        if last is None:
            return None
        if last.stroke_px:
            return "error", "the body moved away from the drawn stroke; draw it again on the " \
                            "new image"
        self.moved_at = stamp
        self.pending, self.not_before = last, stamp + int(self.reground_delay_s * 1e9)
        return "say", f"finding {last.text!r} again after the body moved"

    def on_abort(self, stamp: int) -> tuple[str, str] | None:
        """The controller backed the tool off (the body lost, no body motion, contact lost):
        ("say", line) when the last named point will be found again, for a new plan; None
        when a re-grounding is already pending, nothing was asked, or the last request was
        drawn (its pixels are the person's to draw again)."""
        last = self.last
        if last is None or last.stroke_px or self.pending is not None:
            return None
        self.pending, self.not_before = last, stamp + int(self.reground_delay_s * 1e9)
        return "say", f"finding {last.text!r} again after the controller backed off"

    def take(self, stamp: int, drawn: bool | None = None) -> Any:
        """The pending request when it may be grounded on this frame (``drawn``: only a
        drawn stroke, or only a named point; None: either), now the last one."""
        request = self.pending
        if request is None or stamp < self.not_before:
            return None
        if drawn is not None and bool(request.stroke_px) != drawn:
            return None
        self.pending, self.last = None, request
        return request

    def answer_problem(self, request_stamp: int, request: Any) -> tuple[str, str] | None:
        """An answer about the frame ``request_stamp``: None when it is fresh; else ("error",
        why) after too many late answers in a row, or ("retry", why) with the request
        pending again."""
        age_s = (self.newest - request_stamp) * 1e-9
        if request_stamp >= self.moved_at and age_s <= self.max_answer_age_s:
            self.stale = 0
            return None
        self.stale += 1
        why = ("the body moved since" if request_stamp < self.moved_at else
               f"{age_s:.2f} s old, limit {self.max_answer_age_s} s")
        if self.stale >= self.max_stale_answers:
            self.stale = 0
            return "error", (f"{self.max_stale_answers} answers in a row came too late ({why}); "
                             "the model is slower than MAX_ANSWER_AGE_S allows (raise it, or "
                             "run on a GPU)")
        self.pending, self.not_before = request, 0
        return "retry", f"dropped the answer about frame {request_stamp} ({why}); asking again"
