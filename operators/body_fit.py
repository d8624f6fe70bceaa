"""Fit a parametric human body (shape and placement) to the depth the camera sees, and place
the acupoints by the fitted body.

The body model is a function ``pose(shape) -> (skin vertices, bone heads)`` in the model's
standing frame (``tuina.operators.body_atlas``'s); the fit moves its shape (phenotype: gender,
age, muscle, weight, height, proportions; and how far out each arm lies) and where it lies on
the table (x, y, heading) until its
camera-facing skin meets the body cloud both ways: every seen point near the skin, and the skin
the camera should see near a seen point. The points come from ``label_points`` on the fitted
body. The fit says how well it is known: the share of the cloud it explains, its residual, the
view's agreement, and how far the named point could move within the fit's own uncertainty;
a fit that cannot tell is refused, never pressed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial import cKDTree
from tuina.operators.body_atlas import MIDLINE, label_points, lie_on_table, vertex_normals
from tuina.operators.geometry import project, transform_points
from tuina.operators.grounding import GroundingError, facing_the_arm

PoseFunction = Callable[[np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]]
# the shape the fit moves: anny's phenotype (gender, age, muscle, weight, height, proportions)
# and each arm's turn out from the body (rad, left and right): a person's arms never lie
# quite as the model's do, and a fit that could not move them would bend the legs to match
MEAN_SHAPE = np.array([0.5, 0.8, 0.5, 0.5, 0.36, 0.3, 0.0, 0.0])  # an adult, the middle of each
SHAPE_BOUNDS = (np.array([0.0, 0.6, 0.0, 0.0, 0.0, 0.0, -0.3, -0.3]),
                np.array([1.0, 1.0, 1.0, 1.0, 0.7, 1.0, 0.3, 0.3]))
SHAPE_STEPS = np.array([0.05] * 6 + [0.03, 0.03])  # the slopes' finite differences
SHAPE_TRUST = np.array([0.15] * 6 + [0.1, 0.1])  # how far one linear step may go
PHENOTYPE = slice(0, 6)


class BodyFitError(GroundingError):
    """No body can be trusted in this view, or no point on it."""


@dataclass(frozen=True)
class BodyFitSettings:
    """How the body is looked for and what fit is trusted."""

    yaw_offsets_deg: tuple[float, ...] = (-15.0, 0.0, 15.0)
    # phenotypes the search also starts from (besides MEAN_SHAPE's): the skin of a heavy,
    # muscular person and of a slight one can be traded against height and gender, and one
    # start alone settles in whichever valley it begins nearest
    # (gender, age, muscle, weight: the corners of muscle and weight)
    shape_starts: tuple[tuple[float, ...], ...] = ((0.5, 0.8, 0.8, 0.8), (0.5, 0.8, 0.2, 0.2),
                                                   (0.5, 0.8, 0.8, 0.2), (0.5, 0.8, 0.2, 0.8))
    screen_iterations: int = 2  # every start runs this many steps; the best go on
    finalists: int = 2
    points: int = 1200  # seen points the fit uses (an even subsample)
    skin_points: int = 1200  # camera-facing skin vertices it checks against the cloud
    outer_iterations: int = 6  # correspondences found again this often
    inlier_m: float = 0.01
    view_tolerance_m: float = 0.015
    min_fitness: float = 0.85
    min_agreement: float = 0.85
    max_rmse_m: float = 0.006
    max_point_sigma_mm: float = 3.0  # the named point's 1-sigma uncertainty the fit allows
    # a start that ends within this share of the best's cost is a rival answer: where it puts
    # the point counts as the point's uncertainty
    rival_margin: float = 0.15


@dataclass(frozen=True)
class BodyFit:
    """The fitted body: where it lies, its phenotype, its skin and bones (body frame, lying),
    and how well the camera's view agrees with it."""

    base_T_body: np.ndarray
    shape: np.ndarray  # MEAN_SHAPE's values: the phenotype, then the arms' turns
    vertices: np.ndarray
    bones: dict[str, np.ndarray]
    lying: tuple[np.ndarray, np.ndarray]  # (R, t): body = R @ standing + t
    standing: np.ndarray  # the skin standing, in the model's frame (for the labels)
    fitness: float
    inlier_rmse: float
    agreement: float
    covariance: np.ndarray  # of (shape, dx, dy, dyaw)
    # other starts' answers that explain the depth nearly as well: (shape, base_T_body)
    rivals: tuple[tuple[np.ndarray, np.ndarray], ...] = ()


def _placed(T: np.ndarray, dx: float, dy: float, dyaw: float) -> np.ndarray:
    """``T`` turned by ``dyaw`` (rad) about its own origin's vertical and shifted (base)."""
    c, s = np.cos(dyaw), np.sin(dyaw)
    out = T.copy()
    out[:3, :3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ T[:3, :3]
    out[:2, 3] += (dx, dy)
    return out


class _Model:
    """The body model lying on the table: skin in the body frame for a phenotype (memoised:
    a least-squares step asks for the same one several times)."""

    def __init__(self, pose: PoseFunction, faces: np.ndarray, posture: str):
        self.pose, self.faces, self.posture = pose, faces, posture
        self._memo: dict[bytes, tuple] = {}

    def __call__(self, phenotype: np.ndarray) -> tuple[np.ndarray, dict, tuple, np.ndarray]:
        key = np.round(phenotype, 9).tobytes()
        if key not in self._memo:
            if len(self._memo) > 64:
                self._memo.clear()
            standing, bones = self.pose(phenotype)
            R, t = lie_on_table(standing, bones, self.posture)
            self._memo[key] = (standing @ R.T + t, bones, (R, t), standing)
        return self._memo[key]


def _camera_facing(vertices: np.ndarray, normals: np.ndarray, base_T_body: np.ndarray,
                   base_T_camera: np.ndarray, min_cos: float = 0.0) -> np.ndarray:
    """Which skin vertices face the camera (the cosine to the eye over ``min_cos``; a
    silhouette's grazing skin is better left out of a check)."""
    P = transform_points(base_T_body, vertices)
    N = normals @ base_T_body[:3, :3].T
    eye = base_T_camera[:3, 3] - P
    return np.einsum("ij,ij->i", N, eye) > min_cos * np.linalg.norm(eye, axis=1)


def surface_distance(points_base: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
                     base_T_body: np.ndarray, base_T_camera: np.ndarray,
                     reach_m: float = 0.02) -> np.ndarray:
    """Each point's distance to the camera-facing skin: along the nearest vertex's normal
    (the skin's triangles are centimetres long: a point in a triangle's middle is far from
    its vertices, not from the skin); infinite where no vertex lies within ``reach_m``
    along the skin."""
    normals = vertex_normals(vertices, faces)
    facing = _camera_facing(vertices, normals, base_T_body, base_T_camera)
    placed = transform_points(base_T_body, vertices[facing])
    nrm = normals[facing] @ base_T_body[:3, :3].T
    _, k = cKDTree(placed).query(points_base)
    offset = points_base - placed[k]
    along = np.abs(np.einsum("ij,ij->i", offset, nrm[k]))
    tangential = np.sqrt(np.maximum(np.einsum("ij,ij->i", offset, offset) - along**2, 0.0))
    return np.where(tangential <= reach_m, along, np.inf)


def view_agreement_mesh(vertices: np.ndarray, normals: np.ndarray, base_T_body: np.ndarray,
                        depth: np.ndarray, K: np.ndarray, base_T_camera: np.ndarray,
                        tolerance_m: float) -> float:
    """Of the skin the camera would see with the body at ``base_T_body``, the share the depth
    confirms rather than sees past (the table where the body should be)."""
    facing = _camera_facing(vertices, normals, base_T_body, base_T_camera, min_cos=0.3)
    pc = transform_points(np.linalg.inv(base_T_camera),
                          transform_points(base_T_body, vertices[facing]))
    pc = pc[pc[:, 2] > 0.05]
    uv = np.rint((pc @ K.T)[:, :2] / pc[:, 2:3]).astype(int)
    h, w = depth.shape
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    seen, expected = depth[uv[inside, 1], uv[inside, 0]], pc[inside, 2]
    agree = int(np.sum(np.abs(seen - expected) <= tolerance_m))
    through = int(np.sum(seen > expected + tolerance_m))
    return agree / (agree + through) if agree + through else 0.0


def _in_view(points_base: np.ndarray, depth: np.ndarray, K: np.ndarray,
             base_T_camera: np.ndarray, tolerance_m: float) -> np.ndarray:
    """Which base-frame points the camera sees (inside the image, not hidden behind something
    nearer than ``tolerance_m``)."""
    pc = transform_points(np.linalg.inv(base_T_camera), points_base)
    z = np.maximum(pc[:, 2], 1e-6)
    uv = np.rint((pc @ K.T)[:, :2] / z[:, None]).astype(int)
    h, w = depth.shape
    inside = (pc[:, 2] > 0.05) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & \
        (uv[:, 1] < h)
    seen = np.full(len(pc), np.nan)
    seen[inside] = depth[uv[inside, 1], uv[inside, 0]]
    return inside & np.isfinite(seen) & (seen > 0) & (seen >= pc[:, 2] - tolerance_m)


def fit_residuals(x: np.ndarray, tree: cKDTree, T0: np.ndarray, base: np.ndarray,
                  slopes: np.ndarray, normals: np.ndarray, points: np.ndarray) -> np.ndarray:
    """One fit step's residuals at ``x`` (shape change, then dx, dy, dyaw from ``T0``): the seen
    ``points`` to the skin along its ``normals``, then half of each further skin point's
    distance to the nearest seen point (``tree``); the skin (``base``, first the points' own
    vertices) linear in the shape along ``slopes`` (shape values, vertices, 3)."""
    n = len(slopes)
    vertices = base + np.tensordot(x[:n], slopes, axes=1)
    T = _placed(T0, *x[n:])
    placed = vertices @ T[:3, :3].T + T[:3, 3]
    forward = np.einsum("ij,ij->i", normals @ T[:3, :3].T, points - placed[:len(points)])
    distance, _ = tree.query(placed[len(points):])
    return np.concatenate([forward, 0.5 * distance])


def fit_jacobian(x: np.ndarray, tree: cKDTree, T0: np.ndarray, base: np.ndarray,
                 slopes: np.ndarray, normals: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``fit_residuals``' derivatives in ``x``, exact: each skin point's nearest seen point
    held where it is."""
    n = len(slopes)
    vertices = base + np.tensordot(x[:n], slopes, axes=1)
    c, s = np.cos(x[-1]), np.sin(x[-1])
    R0 = T0[:3, :3]
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ R0
    dR = np.array([[-s, -c, 0.0], [c, -s, 0.0], [0.0, 0.0, 0.0]]) @ R0
    placed = vertices @ R.T + T0[:3, 3] + np.array([x[n], x[n + 1], 0.0])
    m = len(points)
    J = np.empty((len(placed), n + 3))
    # forward: (R n) . (p - R v - t); R is a rotation, so (R n) . (R slope) = n . slope
    turned = normals @ R.T
    J[:m, :n] = -np.einsum("ij,kij->ik", normals, slopes[:, :m])
    J[:m, n:n + 2] = -turned[:, :2]
    J[:m, n + 2] = (np.einsum("ij,ij->i", normals @ dR.T, points - placed[:m])
                    - np.einsum("ij,ij->i", turned, vertices[:m] @ dR.T))
    # the skin to its nearest seen point: half the distance, along the way between them
    skin = placed[m:]
    distance, k = tree.query(skin)
    away = (skin - tree.data[k]) / np.maximum(distance, 1e-12)[:, None]
    J[m:, :n] = 0.5 * np.einsum("ij,kij->ik", away @ R, slopes[:, m:])
    J[m:, n:n + 2] = 0.5 * away[:, :2]
    J[m:, n + 2] = 0.5 * np.einsum("ij,ij->i", away, vertices[m:] @ dR.T)
    return J


def fit_body(observed_base: np.ndarray, expected_base_T_body: np.ndarray, depth: np.ndarray,
             K: np.ndarray, base_T_camera: np.ndarray, pose: PoseFunction, faces: np.ndarray,
             posture: str, settings: BodyFitSettings = BodyFitSettings()) -> BodyFit:
    """Fit the body model to the body cloud from around its expected pose (module doc);
    BodyFitError when no fit can be trusted."""
    if len(observed_base) < 300:
        raise BodyFitError(f"only {len(observed_base)} body points in view; the person must "
                           "be visible to the camera")
    step = max(1, len(observed_base) // settings.points)
    cloud = np.asarray(observed_base, float)
    seen = cloud[::step]
    cloud_tree = cKDTree(cloud)  # all of it: the skin's nearest seen point, centimetres apart
    # in the subsample
    model = _Model(pose, faces, posture)

    def correspond(vertices: np.ndarray, normals: np.ndarray, T: np.ndarray, reach_m: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The seen points that meet the skin within ``reach_m`` and the skin vertex each
        meets; the skin the camera should see that has a seen point within ``reach_m``. What
        lies further (the arm in view, the table's edge, skin the arm hides) is not the body
        or not seen, and would pull the fit."""
        facing = np.flatnonzero(_camera_facing(vertices, normals, T, base_T_camera))
        placed = transform_points(T, vertices)
        distance, k = cKDTree(placed[facing]).query(seen)
        kept = distance <= reach_m
        visible = facing[_in_view(placed[facing], depth, K, base_T_camera,
                                  settings.view_tolerance_m)]
        visible = visible[cloud_tree.query(placed[visible])[0] <= reach_m]
        return (np.flatnonzero(kept), facing[k[kept]],
                visible[:: max(1, len(visible) // settings.skin_points)])

    n = len(MEAN_SHAPE)

    def refine(shape: np.ndarray, T: np.ndarray, iterations: range
               ) -> tuple[float, np.ndarray, np.ndarray, object]:
        """Linearised robust least-squares steps from ``shape`` at ``T``; the answer's cost."""
        result = None
        for iteration in iterations:
            # the skin and its slope along each shape value, at this step's shape
            vertices = model(shape)[0]
            normals = vertex_normals(vertices, faces)
            reach = 0.05 if iteration == 0 else 0.02
            kept, pairs, skin_idx = correspond(vertices, normals, T, reach)
            used = np.concatenate([pairs, skin_idx])
            slopes = np.stack([(model(shape + h * e)[0][used] - vertices[used]) / h
                               for h, e in zip(SHAPE_STEPS, np.eye(n), strict=True)])
            x0 = np.zeros(n + 3)
            lower = np.r_[np.maximum(SHAPE_BOUNDS[0] - shape, -SHAPE_TRUST), -0.05, -0.05, -0.2]
            upper = np.r_[np.minimum(SHAPE_BOUNDS[1] - shape, SHAPE_TRUST), 0.05, 0.05, 0.2]
            result = least_squares(fit_residuals, x0, jac=fit_jacobian,
                                   args=(cloud_tree, T, vertices[used], slopes, normals[pairs],
                                         seen[kept]),
                                   loss="soft_l1", f_scale=0.005, bounds=(lower, upper),
                                   x_scale=np.r_[SHAPE_STEPS * 2, 0.01, 0.01, 0.02],
                                   max_nfev=30)
            shape = np.clip(shape + result.x[:n], *SHAPE_BOUNDS)
            T = _placed(T, *result.x[n:])
        return float(np.mean(np.minimum(np.abs(result.fun), 0.03))), shape, T, result

    screen = range(settings.screen_iterations)
    screened = [refine(MEAN_SHAPE.copy(), _placed(expected_base_T_body, 0.0, 0.0,
                                                  np.radians(yaw)), screen)
                for yaw in settings.yaw_offsets_deg]
    # the other phenotypes start where the best heading's search has put the body
    placed_best = min(screened, key=lambda a: a[0])[2]
    screened += [refine(np.r_[start, MEAN_SHAPE[len(start):]], placed_best, screen)
                 for start in settings.shape_starts]
    screened.sort(key=lambda a: a[0])
    answers = [refine(shape, T, range(settings.screen_iterations, settings.outer_iterations))
               for _, shape, T, _ in screened[:settings.finalists]]
    answers.sort(key=lambda a: a[0])
    _, x, T, result = answers[0]
    rivals = tuple((a[1], a[2]) for a in answers[1:]
                   if a[0] <= answers[0][0] * (1 + settings.rival_margin))
    vertices, bones, lying, standing = model(x)
    distance = surface_distance(seen, vertices, faces, T, base_T_camera)
    inliers = distance <= settings.inlier_m
    fitness = float(np.mean(inliers))
    rmse = float(np.sqrt(np.mean(distance[inliers] ** 2))) if inliers.any() else np.inf
    agreement = view_agreement_mesh(vertices, vertex_normals(vertices, faces), T, depth, K,
                                    base_T_camera,
                                    settings.view_tolerance_m)
    J = result.jac
    sigma2 = float(np.mean(np.minimum(result.fun, 0.03) ** 2))
    covariance = sigma2 * np.linalg.pinv(J.T @ J)
    fit = BodyFit(T, x, vertices, bones, lying, standing, fitness, rmse, agreement,
                  covariance, rivals)
    if fitness < settings.min_fitness:
        raise BodyFitError(f"the fitted body explains only {fitness:.0%} of the body cloud "
                           f"(at least {settings.min_fitness:.0%} needed); set BODY_POSITION/"
                           "BODY_YAW_DEG near where the person lies")
    if agreement < settings.min_agreement:
        raise BodyFitError(f"the camera sees past {1 - agreement:.0%} of where the fitted "
                           "body would be; set BODY_POSITION/BODY_YAW_DEG near where the "
                           "person lies, or clear the view")
    if rmse > settings.max_rmse_m:
        raise BodyFitError(f"the fitted body is {rmse * 1000:.1f} mm RMS off the depth (at "
                           f"most {settings.max_rmse_m * 1000:.0f} mm); the person may lie "
                           "otherwise than the model can (arms, legs); not pressed")
    return fit


def fitted_points(fit: BodyFit, codes: tuple[str, ...], pose: PoseFunction,
                  faces: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """The point-sides ``codes`` on the fitted body: base-frame position, outward normal, and
    the position's 1-sigma uncertainty in mm (the fit's covariance carried to the point by
    finite differences)."""
    posture = _posture_of(fit.lying[0])
    k = len(fit.shape)

    def place(x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        standing, bones = pose(x[:k]) if np.any(x[:k] != fit.shape) else \
            (fit.standing, fit.bones)
        R, t = lie_on_table(standing, bones, posture)
        T = _placed(fit.base_T_body, *x[k:])
        return {code: (transform_points(T, (R @ p + t)[None])[0], T[:3, :3] @ (R @ n))
                for code, (p, n) in label_points(standing, faces, bones, only=codes).items()}

    x0 = np.concatenate([fit.shape, [0.0, 0.0, 0.0]])
    at = place(x0)
    steps = np.r_[SHAPE_STEPS * 0.4, 0.002, 0.002, 0.005]
    J = {code: np.zeros((3, len(x0))) for code in codes}
    for i, h in enumerate(steps):
        x = x0.copy()
        x[i] += h
        moved = place(x)
        for code in codes:
            J[code][:, i] = (moved[code][0] - at[code][0]) / h
    spread = {code: 0.0 for code in codes}
    for shape, T in fit.rivals:  # where an answer that fits nearly as well puts each point
        standing, bones = pose(shape)
        R, t = lie_on_table(standing, bones, posture)
        for code, (p, _) in label_points(standing, faces, bones, only=codes).items():
            elsewhere = transform_points(T, (R @ p + t)[None])[0]
            spread[code] = max(spread[code], float(np.linalg.norm(elsewhere - at[code][0])))
    return {code: (at[code][0], at[code][1], 1000 * max(spread[code], float(np.sqrt(max(
        np.trace(J[code] @ fit.covariance @ J[code].T), 0.0))))) for code in codes}


def _posture_of(R: np.ndarray) -> str:
    """The posture whose lying rotation is ``R``."""
    return "supine" if R[2, 1] < 0 else "prone"


def skin_near(vertices: np.ndarray, faces: np.ndarray, centre: np.ndarray, reach_m: float,
              spacing_m: float = 0.004) -> np.ndarray:
    """Points on the skin's triangles within about ``reach_m`` of ``centre``, ``spacing_m``
    apart or closer (the triangles are centimetres long: their vertices alone would let a
    ball sink between them)."""
    corners = vertices[faces]
    near = np.linalg.norm(corners - centre, axis=2).min(axis=1) < reach_m + 0.03
    tri = corners[near]
    if not len(tri):
        return np.zeros((0, 3))
    n = int(np.ceil(np.max(np.linalg.norm(tri[:, 1] - tri[:, 0], axis=1).max(initial=0.0))
                    / spacing_m)) + 1
    n = min(max(n, 2), 12)
    a, b = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing="ij")
    keep = a + b <= 1.0
    a, b = a[keep], b[keep]
    pts = (tri[:, 0, None] * (1 - a - b)[None, :, None] + tri[:, 1, None] * a[None, :, None]
           + tri[:, 2, None] * b[None, :, None])
    return pts.reshape(-1, 3)


def ball_problem_on_mesh(code: str, position: np.ndarray, normal: np.ndarray,
                         vertices: np.ndarray, faces: np.ndarray, radius_m: float,
                         clearance_m: float) -> str:
    """Why the ball cannot press ``code`` on the fitted skin (all in one frame: the skin
    reaches more than ``clearance_m`` into the ball resting on the point, and would be pressed
    first), or "" when it fits."""
    centre = position + radius_m * normal / np.linalg.norm(normal)
    skin = skin_near(vertices, faces, centre, radius_m)
    depth = radius_m - float(np.min(np.linalg.norm(skin - centre, axis=1))) if len(skin) \
        else 0.0
    if depth <= clearance_m:
        return ""
    return (f"the {radius_m * 2000:.0f} mm ball does not fit the body at {code}: the skin "
            f"around it reaches {depth * 1000:.1f} mm into it and would be pressed first; not "
            "pressed; choose a point nearby or a smaller ball")


def approach_problem_on_mesh(code: str, position: np.ndarray, normal: np.ndarray,
                             vertices: np.ndarray, faces: np.ndarray, ball_radius_m: float,
                             corridor_m: float, length_m: float) -> str:
    """Why the tool cannot come in to ``code`` along its normal on the fitted skin (the skin
    passes within ``corridor_m`` of that line, from just past the ball out to ``length_m``),
    or "" when the way in is clear."""
    n = normal / np.linalg.norm(normal)
    start = 2 * ball_radius_m + 0.005
    line = position + np.arange(start, length_m + 1e-9, 0.005)[:, None] * n
    mid = line[len(line) // 2]
    skin = skin_near(vertices, faces, mid, float(np.linalg.norm(line[-1] - line[0])) / 2
                     + corridor_m)
    if not len(skin):
        return ""
    clearance = float(cKDTree(skin).query(line)[0].min())
    if clearance >= corridor_m:
        return ""
    return (f"the tool's way in to {code} along the surface normal passes "
            f"{max(clearance, 0.0) * 1000:.0f} mm from the skin (it needs "
            f"{corridor_m * 1000:.0f} mm): the tool would strike the body; not pressed; turn "
            "the person so the point faces the arm, or choose another point")


@dataclass(frozen=True)
class BodyTarget:
    """A point-side found on the fitted body: base-frame position and outward normal, its
    pixel, a stroke's pixels (empty but for a stroke), and the fit."""

    code: str
    position: np.ndarray
    normal: np.ndarray
    centre_px: np.ndarray
    stroke_px: np.ndarray
    fit: BodyFit


@dataclass(frozen=True)
class BodyChecks:
    """What the ball and the tool need on the fitted skin (0: not checked), and a stroke's
    length."""

    ball_radius_m: float = 0.0
    ball_clearance_m: float = 0.0
    approach_clearance_m: float = 0.0
    approach_length_m: float = 0.15
    stroke_length_m: float = 0.0


def ground_on_body(code: str, side_named: bool, unnamed_side: str, observed_base: np.ndarray,
                   expected_base_T_body: np.ndarray, depth: np.ndarray, K: np.ndarray,
                   base_T_camera: np.ndarray, pose: PoseFunction, faces: np.ndarray,
                   posture: str, checks: BodyChecks = BodyChecks(),
                   settings: BodyFitSettings = BodyFitSettings()) -> BodyTarget:
    """Fit the body model to the body cloud and find the point-side ``code`` on it: when the
    instruction named no side, the side ``unnamed_side`` says (facing: the one facing the
    arm's base on the fitted body; left; right). BodyFitError when the fit, the point's
    uncertainty, the ball's fit or the tool's way in cannot be trusted."""
    fit = fit_body(observed_base, expected_base_T_body, depth, K, base_T_camera, pose, faces,
                   posture, settings)
    left = code.removesuffix("-R")
    sides = (left,) if left in MIDLINE else (left, f"{left}-R")
    placed = fitted_points(fit, sides, pose, faces)
    if not side_named and len(sides) == 2:
        code = {"left": left, "right": sides[1]}.get(unnamed_side) or sides[facing_the_arm(
            np.array([placed[c][0] for c in sides]), np.array([placed[c][1] for c in sides]))]
    position, normal, sigma_mm = placed[code]
    if sigma_mm > settings.max_point_sigma_mm:
        raise BodyFitError(f"the view cannot tell where {code} is: the fitted body puts it "
                           f"within {sigma_mm:.1f} mm (1 sigma; at most "
                           f"{settings.max_point_sigma_mm:g} mm); not pressed; let the camera "
                           "see more of the person")
    skin = transform_points(fit.base_T_body, fit.vertices)
    if checks.ball_radius_m > 0 and (problem := ball_problem_on_mesh(
            code, position, normal, skin, faces, checks.ball_radius_m,
            checks.ball_clearance_m)):
        raise BodyFitError(problem)
    if checks.approach_clearance_m > 0 and (problem := approach_problem_on_mesh(
            code, position, normal, skin, faces, checks.ball_radius_m,
            checks.approach_clearance_m, checks.approach_length_m)):
        raise BodyFitError(problem)
    camera_T_base = np.linalg.inv(base_T_camera)
    stroke = np.zeros((0, 2))
    if checks.stroke_length_m > 0:
        # towards the feet on the skin's tangent plane: down a limb lying along the body, down
        # the trunk
        along = -fit.base_T_body[:3, 0]
        along = along - (along @ normal) * normal
        path = position + np.linspace(0.0, checks.stroke_length_m, 8)[:, None] * along \
            / np.linalg.norm(along)
        stroke = project(K, camera_T_base, path)
    return BodyTarget(code, position, normal, project(K, camera_T_base, position[None])[0],
                      stroke, fit)
