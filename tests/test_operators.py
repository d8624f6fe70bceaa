import functools

import numpy as np
import pinocchio as pin
import pytest
from scipy.spatial.transform import Rotation
from tuina.operators.arms import ArmKinematics, arm_kinematics, load_arm
from tuina.operators.force_control import PID, ForceConfig, HybridForceController
from tuina.operators.geometry import (
    backproject,
    fit_plane_ransac,
    make_transform,
    matrix_to_quat,
    project,
    quat_to_matrix,
    tool_orientation,
    transform_points,
)
from tuina.operators.grounding import (
    GroundingError,
    acupoint_shift_mm,
    body_cloud,
    register_phantom,
    validate_stroke,
    view_agreement,
)
from tuina.operators.instructions import UnknownAcupoint, parse_instruction
from tuina.operators.motion import BodyMotionScript, body_offset
from tuina.operators.phantom import ATLAS, CAPSULES, placement, surface_samples
from tuina.operators.planner import (
    Plan,
    PlannerConfig,
    PlanningError,
    ReachConfig,
    ball_offset,
    check_workspace,
    min_jerk_duration,
    plan_massage,
    plan_reachable,
    solve_plan,
    tool_candidates,
)
from tuina.operators.posefit import (
    NoDepthError,
    StrokeOffBody,
    TrustConfig,
    UntrustedTarget,
    ball_intrusion,
    point_at_pixel,
    stroke_path,
    surface_normal,
    trust_surface,
)
from tuina.operators.safety import SafetyConfig, command_problem, rate_limit, retreat_point
from tuina.operators.sensor import (
    DepthNoise,
    DepthWatch,
    WrenchNoise,
    WrenchSensor,
    apply_depth_noise,
)
from tuina.operators.session import SessionLimits, SessionLog, summarize

K = np.array([[433.0, 0, 319.5], [0, 433.0, 239.5], [0, 0, 1]])
# camera 0.9 m above the base origin looking straight down
BASE_T_CAM = make_transform(np.diag([1.0, -1.0, -1.0]), np.array([0.5, 0.0, 0.9]))


def plane_depth(height: float = 0.1) -> np.ndarray:
    """Depth image of the table-like plane z = height seen by BASE_T_CAM."""
    v, u = np.mgrid[0:480, 0:640].astype(float)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    d = rays @ BASE_T_CAM[:3, :3].T  # ray directions in base; optical z component is 1
    return ((height - BASE_T_CAM[2, 3]) / d[..., 2]).astype(np.float32)


# --- atlas and instructions -------------------------------------------------------------

def test_atlas_has_twelve_points_on_the_surface():
    assert len(ATLAS) >= 12
    assert len({a.code for a in ATLAS}) == len(ATLAS)
    assert sorted(a.number for a in ATLAS) == list(range(1, len(ATLAS) + 1))
    for a in ATLAS:
        assert abs(np.linalg.norm(a.normal) - 1) < 1e-9
    for a in ATLAS[:9]:  # limb points: exactly one radius from the segment axis
        dist = []
        for seg in CAPSULES:
            ab = np.subtract(seg.b, seg.a)
            s = np.clip((a.position - seg.a) @ ab / (ab @ ab), 0, 1)
            dist.append(abs(np.linalg.norm(a.position - (seg.a + s * ab)) - seg.radius))
        assert min(dist) < 1e-9, a.code


@pytest.mark.parametrize("text, code, pressure, technique", [
    ("press Zusanli with moderate pressure", "ST36", "moderate", "press"),
    ("please knead st36 gently", "ST36", "light", "knead"),
    ("按足三里，重一点", "ST36", "firm", "press"),
    ("Please tell me the location of the massage point number 4.", "SP6", "moderate", "press"),
    ("stroke Neiguan, firm", "PC6", "firm", "stroke"),
    ("massage point number 10, light", "CV12", "light", "press"),
    ("揉中脘", "CV12", "moderate", "knead"),
    ("Press QIHAI firmly", "CV6", "firm", "press"),
    ("press Zusanli on the right leg", "ST36-R", "moderate", "press"),
    ("knead SP6-R lightly", "SP6-R", "light", "knead"),
    ("press ST36-L", "ST36", "moderate", "press"),
    ("press the left Hegu", "LI4", "moderate", "press"),
    ("按右足三里", "ST36-R", "moderate", "press"),
    ("press Zhongwan on the right", "CV12", "moderate", "press"),  # on the midline
])
def test_instruction_parsing(text, code, pressure, technique):
    parsed = parse_instruction(text)
    assert (parsed.acupoint.code, parsed.pressure, parsed.technique) == (code, pressure,
                                                                          technique)


@pytest.mark.parametrize("text, side", [
    ("press Zusanli", ""), ("press Zusanli on the right leg", "right"), ("ST36-L", "left"),
    ("按左足三里", "left"), ("press Zhongwan on the right", ""),  # the midline has no side
])
def test_the_instruction_says_which_side_it_named(text, side):
    assert parse_instruction(text).side == side


def test_with_no_side_named_the_side_that_faces_the_arm_is_pressed():
    from tuina.operators.grounding import side_facing_arm

    def chosen(body_position, yaw_deg):
        T = placement(body_position, yaw_deg)
        return {a.code: side_facing_arm(a, T).code for a in ATLAS}

    # the default scene: the body's left side lies toward the arm
    franka = chosen((0.55, 0.2, 0.0), 90.0)
    # points facing out of the limb (lateral) or straight up: the near leg's, the left
    assert all(franka[c] == c for c in ("ST36", "ST35", "GB34", "LI4", "LI11", "PC6", "LR3"))
    # the inner side of the leg: the far leg's, which faces the arm
    assert franka["SP6"] == "SP6-R" and franka["SP10"] == "SP10-R"
    assert franka["CV12"] == "CV12"  # on the midline
    # turned the other way (the Baxter's scene): the mirror image
    baxter = chosen((0.45, -0.1, -0.2), -90.0)
    assert baxter["ST36"] == "ST36-R" and baxter["SP6"] == "SP6" and baxter["LI4"] == "LI4-R"


def test_the_right_side_point_mirrors_the_left_one_across_the_midline():
    from tuina.operators.phantom import POINT_SIDES, side_of

    left, right = parse_instruction("press Neiguan").acupoint, \
        parse_instruction("press Neiguan, right arm").acupoint
    assert side_of(left) == "left" and side_of(right) == "right"
    np.testing.assert_allclose(right.position, left.position * [1, -1, 1])
    np.testing.assert_allclose(right.normal, left.normal * [1, -1, 1])
    assert len({p.code for p in POINT_SIDES}) == len(POINT_SIDES) == 46
    supine = [p for p in POINT_SIDES if p.posture == "supine"]
    assert len(supine) == 22 and sum(side_of(p) == "midline" for p in supine) == 2
    prone = [p for p in POINT_SIDES if p.posture == "prone"]  # the back: none on the spine
    assert len(prone) == 24 and sum(side_of(p) == "left" for p in prone) == 12


def test_unknown_acupoint_names_the_closest():
    with pytest.raises(UnknownAcupoint) as err:
        parse_instruction("press Zusanly please")
    assert "Zusanli" in str(err.value) and "\n" not in str(err.value)


# --- geometry ---------------------------------------------------------------------------

def test_project_backproject_round_trip():
    pts = np.array([[0.4, -0.1, 0.1], [0.6, 0.2, 0.05]])
    cam_T_base = np.linalg.inv(BASE_T_CAM)
    uv = project(K, cam_T_base, pts)
    z = transform_points(cam_T_base, pts)[:, 2]
    back = transform_points(BASE_T_CAM, backproject(K, uv, z))
    np.testing.assert_allclose(back, pts, atol=1e-12)


def test_ransac_plane_ignores_outliers():
    rng = np.random.default_rng(1)
    xy = rng.uniform(-0.1, 0.1, (400, 2))
    normal = np.array([0.2, -0.1, 1.0]) / np.linalg.norm([0.2, -0.1, 1.0])
    z = -(normal[0] * xy[:, 0] + normal[1] * xy[:, 1]) / normal[2]
    pts = np.column_stack([xy, z]) + rng.normal(0, 0.0005, (400, 3))
    pts[:80] += rng.uniform(-0.05, 0.05, (80, 3))
    n, _, inliers = fit_plane_ransac(pts, 0.002, 100, np.random.default_rng(0))
    assert np.degrees(np.arccos(abs(n @ normal))) < 1.0
    assert inliers[80:].mean() > 0.9


def test_tool_orientation_points_into_the_surface():
    n = np.array([0.3, 0.0, 1.0]) / np.linalg.norm([0.3, 0.0, 1.0])
    R = quat_to_matrix(tool_orientation(n, np.array([1.0, 0, 0])))
    np.testing.assert_allclose(R[:, 2], -n, atol=1e-9)
    assert R[:, 0] @ np.array([1.0, 0, 0]) > 0.9


# --- pose-fit ---------------------------------------------------------------------------

def test_point_and_normal_from_depth_bridge_a_hole():
    depth = plane_depth(0.1)
    depth[230:250, 310:330] = np.nan  # hole at the target
    p = point_at_pixel(depth, K, BASE_T_CAM, np.array([319.5, 239.5]))
    np.testing.assert_allclose(p, [0.5, 0.0, 0.1], atol=1e-3)
    n = surface_normal(depth, K, BASE_T_CAM, np.array([400.0, 200.0]),
                       np.random.default_rng(0))
    assert n[2] > 0.999


def test_no_depth_is_a_clear_error():
    depth = np.full((480, 640), np.nan, np.float32)
    with pytest.raises(NoDepthError, match="no valid depth"):
        point_at_pixel(depth, K, BASE_T_CAM, np.array([320.0, 240.0]))


def block_on_table_depth() -> np.ndarray:
    """Depth of a table (z = 0) with a flat-topped 'body' block (z = 0.1) under BASE_T_CAM."""
    v, u = np.mgrid[0:480, 0:640].astype(float)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    d = rays @ BASE_T_CAM[:3, :3].T
    depth = (0.0 - BASE_T_CAM[2, 3]) / d[..., 2]
    z_top = (0.1 - BASE_T_CAM[2, 3]) / d[..., 2]
    hit = BASE_T_CAM[:3, 3] + d * z_top[..., None]
    on_block = (np.abs(hit[..., 0] - 0.5) < 0.1) & (np.abs(hit[..., 1]) < 0.15)
    depth[on_block] = z_top[on_block]
    return depth.astype(np.float32)


def block_body() -> np.ndarray:
    depth = block_on_table_depth()
    return body_cloud(depth, K, BASE_T_CAM, np.array([0.1, -0.9, -0.05]),
                      np.array([1.0, 0.9, 0.3]), np.random.default_rng(0))


def test_body_cloud_drops_the_table():
    body = block_body()
    assert len(body) > 500
    np.testing.assert_allclose(body[:, 2], 0.1, atol=1e-3)


def test_stroke_path_is_on_the_surface_and_evenly_spaced():
    depth = block_on_table_depth()
    path = stroke_path(depth, K, BASE_T_CAM, np.array([[300.0, 240], [360, 240]]),
                       block_body(), 0.005)
    np.testing.assert_allclose(path[:, 2], 0.1, atol=1e-3)
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    assert np.all(np.abs(steps - steps.mean()) < 1e-3)
    assert abs(np.linalg.norm(path[-1] - path[0]) - 60 * 0.8 / 433) < 0.005


def test_stroke_leaving_the_body_is_refused():
    depth = block_on_table_depth()
    # from the block's top across its edge onto the table
    with pytest.raises(StrokeOffBody, match="leaves the body at pixel"):
        stroke_path(depth, K, BASE_T_CAM, np.array([[320.0, 240], [620, 240]]), block_body(),
                    0.005)


@pytest.mark.parametrize("stroke, message", [
    ([], "0 point"),
    ([10.0, 20.0], "1 point"),
    ([10.0, 20.0, 30.0], "u,v pairs"),
    ([10.0, 20.0, float("nan"), 30.0], "NaN"),
    ([100.0, 100.0, 700.0, 100.0], "outside the 640x480 image"),
    ([100.0, 100.0, 100.5, 100.0], "shorter than 2 px"),
])
def test_bad_strokes_give_one_clear_error(stroke, message):
    with pytest.raises(GroundingError, match=message) as err:
        validate_stroke(stroke, 640, 480)
    assert "\n" not in str(err.value)


def test_point_on_a_curved_limb_is_unbiased_at_a_subpixel():
    # a horizontal cylinder (radius 4 cm, axis along y at z = 0.06) seen from above, noisy
    v, u = np.mgrid[0:480, 0:640].astype(float)
    x = (u - K[0, 2]) / K[0, 0]
    centre_x, radius, axis_z = 0.02, 0.04, 0.06
    # optical frame: camera looks down, optical x = base x; surface height above the axis
    lateral = np.clip(x * 0.84 - centre_x, -radius, radius)  # first guess of the range
    depth = np.full(u.shape, np.nan)
    for _ in range(4):
        z_surface = axis_z + np.sqrt(np.maximum(radius**2 - lateral**2, 0.0))
        depth = BASE_T_CAM[2, 3] - z_surface
        lateral = x * depth + BASE_T_CAM[0, 3] - 0.5 - centre_x
    rng = np.random.default_rng(3)
    noisy = (depth + rng.normal(0, 0.0015, depth.shape)).astype(np.float32)
    uv = np.array([338.37, 240.61])
    p = point_at_pixel(noisy, K, BASE_T_CAM, uv)
    z_true = depth[240, 338] + (depth[240, 339] - depth[240, 338]) * 0.37
    truth = transform_points(BASE_T_CAM, backproject(K, uv[None], np.array([z_true])))[0]
    assert np.linalg.norm(p - truth) < 0.8e-3


# --- sensor -----------------------------------------------------------------------------

def test_depth_noise_is_seeded_and_grows_with_range():
    depth = np.full((200, 200), 0.8, np.float32)
    a = apply_depth_noise(depth, 433.0, DepthNoise(), np.random.default_rng([0, 5]))
    b = apply_depth_noise(depth, 433.0, DepthNoise(), np.random.default_rng([0, 5]))
    np.testing.assert_array_equal(a, b)
    far = apply_depth_noise(depth * 2, 433.0, DepthNoise(), np.random.default_rng(1))
    assert np.nanstd(far) > 3 * np.nanstd(a)
    assert 0.001 < np.isnan(a).mean() < 0.02




def test_depth_noise_is_correlated_like_stereo_and_keeps_a_bias_frames_do_not_average_away():
    depth = np.full((240, 320), 1.0, np.float32)
    one = apply_depth_noise(depth, 433.0, DepthNoise(hole_rate=0.0),
                            np.random.default_rng([1, 0])) - 1.0
    # neighbouring pixels move together (the matcher's window), unlike white noise
    assert np.corrcoef(one[:, :-1].ravel(), one[:, 1:].ravel())[0, 1] > 0.6
    sigma = 0.08 / (433.0 * 0.095)  # z^2 * subpixel / (fx * baseline) at 1 m: 1.9 mm
    assert 0.8 * sigma < one.std() < 1.2 * sigma
    # a 5 x 5 mean keeps most of it (white noise would keep a fifth)
    box = one[:240 // 5 * 5, :320 // 5 * 5].reshape(48, 5, 64, 5).mean(axis=(1, 3))
    assert box.std() > 0.5 * one.std()
    # the mean of 40 frames (in 16 x 16 px blocks) is not the truth: a smooth bias of up to
    # 0.2 % of z stays
    def bias(seed: int) -> np.ndarray:
        frames = [apply_depth_noise(depth, 433.0, DepthNoise(hole_rate=0.0),
                                    np.random.default_rng([seed, k])) for k in range(40)]
        return (np.mean(frames, axis=0) - 1.0).reshape(15, 16, 20, 16).mean(axis=(1, 3))

    first, later = bias(1), bias(2)
    assert 0.0005 < np.abs(first).max() <= 0.0023
    assert np.corrcoef(first.ravel(), later.ravel())[0, 1] > 0.8  # the sensor's, it stays


def live_frames(n: int, seed: int = 0):
    """n frames of a still scene as a live sensor gives them: fresh noise each time."""
    depth = np.full((60, 80), 0.8, np.float32)
    return [apply_depth_noise(depth, 433.0, DepthNoise(), np.random.default_rng([seed, k]))
            for k in range(n)]


def test_depth_watch_passes_a_live_stream_of_a_still_scene():
    watch = DepthWatch()
    assert all(watch.frame(k * 50_000_000, d) is None for k, d in enumerate(live_frames(40)))


@pytest.mark.parametrize("same_stamp", [False, True])
def test_depth_watch_calls_a_repeated_frame_frozen_after_the_repeats(same_stamp):
    watch = DepthWatch(frozen_frames=3)
    frames = live_frames(5)
    for k, d in enumerate(frames):
        assert watch.frame(k * 50_000_000, d) is None
    stuck = frames[-1]
    problems = [watch.frame((4 if same_stamp else 5 + k) * 50_000_000, stuck.copy())
                for k in range(3)]
    assert problems[:2] == [None, None]
    assert problems[2].startswith("camera frozen: 4 depth frames")
    # a fresh frame ends the episode
    assert watch.frame(10**9, live_frames(1, seed=9)[0]) is None
    assert DepthWatch(frozen_frames=0).frame(0, stuck) is None


def test_depth_watch_calls_depth_invalid_only_after_a_valid_frame_and_three_bad_ones():
    watch = DepthWatch(invalid_frames=3, min_valid_share=0.25)
    empty = np.full((60, 80), np.nan, np.float32)
    # a starting sensor's empty frames are no fault
    assert all(watch.frame(k, empty) is None for k in range(10))
    assert watch.frame(10, live_frames(1)[0]) is None
    sparse = live_frames(1)[0].copy()
    sparse[:50] = np.nan  # 17 % valid
    assert [watch.frame(11 + k, frame) for k, frame in enumerate([sparse, empty])] == [None, None]
    problem = watch.frame(13, empty)
    assert problem.startswith("depth invalid: 0% of the pixels have depth")
    assert "for 3 frames" in problem
    # all-NaN frames repeat exactly, but they are invalid, not frozen
    assert "frozen" not in (watch.frame(14, empty) or "")



# --- trust, then press ------------------------------------------------------------------

CAMERA = np.array([0.5, 0.0, 1.0])
SIDE = np.array([0.5, -0.1, 0.1])  # a point on the side of a limb, facing +y
SIDE_NORMAL = np.array([0.0, 1.0, 0.0])  # seen at ~85 deg from the camera above


def test_a_well_seen_depth_fit_is_trusted_and_said_to_agree_with_the_model():
    top, up = np.array([0.5, 0.0, 0.1]), np.array([0.0, 0.0, 1.0])
    got = trust_surface((top, up), CAMERA, top + [0.002, 0, 0], up, 0.003, TrustConfig())
    assert got.surface == "depth" and got.view_angle_deg < 1.0
    np.testing.assert_allclose(got.point, top)
    assert "agrees with the registered model" in got.why
    alone = trust_surface((top, up), CAMERA, None, None, float("nan"), TrustConfig())
    assert alone.surface == "depth" and "model" not in alone.why


def test_a_grazing_point_uses_the_registered_model_or_is_refused():
    # depth at a grazing angle: the fit lands on the top of the limb, 25 mm away, wrong normal
    wrong = (SIDE + [0.0, -0.02, 0.015], np.array([0.0, 0.3, 0.95]))
    got = trust_surface(wrong, CAMERA, SIDE, SIDE_NORMAL, 0.003, TrustConfig())
    assert got.surface == "model" and "25 mm" in got.why
    np.testing.assert_allclose(got.point, SIDE)
    np.testing.assert_allclose(got.normal, SIDE_NORMAL)
    assert got.view_angle_deg > 80
    # the same with a registration that fits badly: refused, with the reason and a remedy
    with pytest.raises(UntrustedTarget, match=r"25 mm .*registration fits 9.0 mm RMS.*move the"
                       r" camera"):
        trust_surface(wrong, CAMERA, SIDE, SIDE_NORMAL, 0.009, TrustConfig())
    # a box backend knows only pixels: a depth fit seen at a grazing angle is refused
    graze = (SIDE, SIDE_NORMAL)
    with pytest.raises(UntrustedTarget, match=r"seen at 8\d deg from the camera"):
        trust_surface(graze, CAMERA, None, None, float("nan"), TrustConfig())
    # no depth at all there: the model if it fits, else the depth error stands
    got = trust_surface(None, CAMERA, SIDE, SIDE_NORMAL, 0.003, TrustConfig())
    assert got.surface == "model" and got.why.startswith("no depth fit")
    with pytest.raises(UntrustedTarget, match="no depth fit"):
        trust_surface(None, CAMERA, SIDE, SIDE_NORMAL, float("nan"), TrustConfig())



def test_a_ball_fits_a_flat_or_convex_surface_not_a_hollow_narrower_than_itself():
    g = np.linspace(-0.05, 0.05, 101)
    x, y = np.meshgrid(g, g)
    flat = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)
    up = np.array([0.0, 0.0, 1.0])
    assert ball_intrusion(np.zeros(3), up, flat, 0.02) == (0.0, 0.0)
    # a few noisy depth points 4 mm proud of flat skin are not a hollow
    noisy = np.vstack([flat, [[0.002, 0.0, 0.004], [-0.003, 0.002, 0.004]]])
    assert ball_intrusion(np.zeros(3), up, noisy, 0.02) == (0.0, 0.0)
    assert ball_intrusion(np.zeros(3), up, noisy, 0.02, min_points=1)[0] > 0.003
    # a groove whose walls rise at 45 deg: a 20 mm ball rests on the walls, not the bottom
    groove = flat.copy()
    groove[:, 2] = np.abs(groove[:, 0])
    depth, where = ball_intrusion(np.zeros(3), up, groove, 0.02)
    assert depth == pytest.approx(0.02 - 0.02 / np.sqrt(2), abs=1e-3)  # 5.9 mm
    assert where == pytest.approx(0.01 * np.sqrt(2), abs=1.5e-3)  # the wall at (10, 10) mm
    # a small ball fits the same groove better
    assert ball_intrusion(np.zeros(3), up, groove, 0.005)[0] < depth / 3


# --- registration -----------------------------------------------------------------------

SIM_CAM_T = make_transform(np.array([[0, -1.0, 0], [-1, 0, 0], [0, 0, -1]]),
                           np.array([0.55, 0.0, 0.95]))


@functools.lru_cache(maxsize=1)
def dense_phantom() -> np.ndarray:
    """The phantom's visible side, 2 mm apart (body frame)."""
    return surface_samples(0.002)[0]


def phantom_depth(body_T: np.ndarray, cam_T: np.ndarray = SIM_CAM_T) -> np.ndarray:
    """A synthetic depth image of the phantom on the table, as the camera sees it."""
    pts = dense_phantom()
    pts = pts @ body_T[:3, :3].T + body_T[:3, 3]
    pc = (pts - cam_T[:3, 3]) @ cam_T[:3, :3]
    uv = pc @ K.T
    u, v = (uv[:, 0] / uv[:, 2]).round().astype(int), (uv[:, 1] / uv[:, 2]).round().astype(int)
    depth = np.full((480, 640), np.nan)
    # table plane first, then the body in front of it (z-buffer by minimum)
    vv, uu = np.mgrid[0:480, 0:640]
    rays = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], np.ones(uu.shape)], -1)
    depth[:] = (0.0 - cam_T[2, 3]) / (rays @ cam_T[:3, :3].T)[..., 2]
    ok = (u >= 0) & (u < 640) & (v >= 0) & (v < 480)
    order = np.lexsort((-pc[ok, 2], v[ok], u[ok]))  # the nearest point of a pixel last
    depth[v[ok][order], u[ok][order]] = np.minimum(depth[v[ok][order], u[ok][order]],
                                                   pc[ok, 2][order])
    return depth.astype(np.float32)


EXPECTED_BODY = placement((0.55, 0.2, 0.0), 90.0)
ROI = (np.array([0.1, -0.9, -0.05]), np.array([1.0, 0.9, 0.3]))


def register_seen(body_T: np.ndarray, keep: tuple[slice, slice] | None = None):
    """Register the phantom as the camera sees it at ``body_T`` (only the image region
    ``keep`` when given), from the expected pose."""
    depth = phantom_depth(body_T)
    if keep is not None:
        hidden = np.ones(depth.shape, bool)
        hidden[keep] = False
        depth[hidden] = np.nan
    cloud = body_cloud(depth, K, SIM_CAM_T, *ROI, np.random.default_rng(0))
    return register_phantom(cloud, EXPECTED_BODY, depth, K, SIM_CAM_T)


@pytest.mark.parametrize("dx, dy, dyaw", [(0.05, -0.04, 20.0), (-0.06, 0.05, -25.0),
                                          (0.0, 0.0, 0.0)])
def test_registration_finds_a_body_lying_off_its_expected_pose(dx, dy, dyaw):
    # one ICP from the expected pose converges 330 mm off, fitness 0.69, for the first
    truth = placement((0.55 + dx, 0.2 + dy, 0.0), 90.0 + dyaw)
    fit = register_seen(truth)
    assert acupoint_shift_mm(fit.base_T_body, truth) < 1.0
    assert fit.fitness > 0.95 and fit.agreement > 0.9


def test_registration_refuses_a_body_the_other_way_round():
    with pytest.raises(GroundingError, match="matches only"):
        register_seen(placement((0.55, 0.2, 0.0), 270.0))


def test_registration_refuses_a_patch_of_shin_that_fits_several_poses():
    st36 = next(a for a in ATLAS if a.code == "ST36")
    p = transform_points(np.linalg.inv(SIM_CAM_T) @ EXPECTED_BODY, st36.position[None])[0]
    u, v = (K @ p)[:2] / p[2]
    patch = (slice(int(v) - 60, int(v) + 60), slice(int(u) - 60, int(u) + 60))
    with pytest.raises(GroundingError, match="fits two poses alike"):
        register_seen(EXPECTED_BODY, patch)
    # a strip across the whole body pins it down
    strip = (slice(0, 480), slice(int(u) - 30, int(u) + 30))
    assert acupoint_shift_mm(register_seen(EXPECTED_BODY, strip).base_T_body,
                             EXPECTED_BODY) < 1.0


def test_registration_refuses_a_fit_the_view_contradicts():
    body = placement((0.55, 0.2, 0.0), 90.0)
    depth = phantom_depth(body)
    cloud = body_cloud(depth, K, SIM_CAM_T, *ROI, np.random.default_rng(0))
    empty_table = phantom_depth(placement((5.0, 5.0, 0.0), 90.0))  # the body out of view
    with pytest.raises(GroundingError, match="sees past"):
        register_phantom(cloud, EXPECTED_BODY, empty_table, K, SIM_CAM_T)
    assert view_agreement(body, depth, K, SIM_CAM_T) > 0.95
    assert view_agreement(body, empty_table, K, SIM_CAM_T) == 0.0


# --- planner and IK ---------------------------------------------------------------------

def test_plan_phases_limits_and_clearance():
    cfg = PlannerConfig()
    target = np.array([0.45, -0.3, 0.1])
    n = np.array([0.0, 0.0, 1.0])
    q = tool_orientation(n, np.array([1.0, 0, 0]))
    path = target + np.linspace(0, 0.05, 6)[1:, None] * np.array([0, -1.0, 0])
    plan = plan_massage(np.array([0.34, 0.0, 0.33]), np.array([1.0, 0, 0, 0]), target, n, q,
                        path, 6.0, "press", cfg)
    order = [p for i, p in enumerate(plan.phases) if i == 0 or plan.phases[i - 1] != p]
    assert order == ["approach", "contact", "press", "stroke", "retreat"]
    approach = np.array([p == "approach" for p in plan.phases])
    assert np.all(plan.positions[approach, 2] >= target[2] + cfg.standoff_m - 1e-9)
    v = np.diff(plan.positions[approach], axis=0) / cfg.dt
    assert np.linalg.norm(v, axis=1).max() <= cfg.max_speed * 1.05
    assert np.all(plan.forces_n[approach] == 0) and np.all(plan.forces_n[
        np.array([p == "press" for p in plan.phases])] == 6.0)
    assert min_jerk_duration(0.1, cfg) >= 1.875 * 0.1 / cfg.max_speed


def test_ik_reaches_tool_poses_and_rejects_unreachable():
    flange_T_tool = pin.SE3(pin.rpy.rpyToMatrix(0, 0, -np.pi / 4), np.array([0, 0, 0.15]))
    model, flange, posture = load_arm("fr3")
    ik = ArmKinematics(model, flange, flange_T_tool.homogeneous, posture)
    q0 = np.array([0.0, -0.7, 0.0, -2.6, 0.0, 1.9, 0.785])
    target = pin.SE3(quat_to_matrix(np.array([1.0, 0, 0, 0])), np.array([0.45, -0.3, 0.12]))
    q = ik.solve(target, q0)
    np.testing.assert_allclose(ik.forward(q).translation, target.translation, atol=1e-3)
    assert np.all(q >= ik.lower) and np.all(q <= ik.upper)
    with pytest.raises(PlanningError, match="out of reach"):
        ik.solve(pin.SE3(np.eye(3), np.array([1.5, 0.0, 0.2])), q0)


def test_a_plan_leaving_the_workspace_is_refused():
    cfg = PlannerConfig()
    plan = plan_massage(np.array([0.4, 0.0, 0.3]), np.array([1.0, 0, 0, 0]),
                        np.array([0.5, 0.0, 0.05]), np.array([0, 0, 1.0]),
                        np.array([1.0, 0, 0, 0]), np.zeros((0, 3)), 6.0, "press", cfg)
    check_workspace(plan, np.array([0.15, -0.75, 0.0]), np.array([0.85, 0.75, 0.8]))
    with pytest.raises(PlanningError, match="outside the workspace box.*WORKSPACE_MIN"):
        check_workspace(plan, np.array([0.15, -0.75, 0.06]), np.array([0.85, 0.75, 0.8]))



def test_tool_candidates_go_from_straight_to_the_widest_tilt():
    n = np.array([0.3, -0.2, 0.9])
    n /= np.linalg.norm(n)
    straight = tool_orientation(n, np.array([1.0, 0, 0]))
    cands = tool_candidates(n, straight, ReachConfig(max_tilt_deg=30, tilt_step_deg=10))
    np.testing.assert_allclose(quat_to_matrix(cands[0][3]), quat_to_matrix(straight), atol=1e-12)
    tilts = [c[0] for c in cands]
    assert tilts == sorted(tilts) and tilts[-1] == 30.0
    for tilt, _, _, quat in cands:
        axis = quat_to_matrix(quat)[:, 2]  # the tool axis, into the body
        assert np.degrees(np.arccos(np.clip(-axis @ n, -1, 1))) == pytest.approx(tilt, abs=1e-6)
    assert len({tuple(np.round(quat_to_matrix(c[3]), 6).ravel()) for c in cands}) == len(cands)


def test_a_tilted_ball_still_touches_the_target():
    n = np.array([0.0, 0.0, 1.0])
    for tilt, _, _, quat in tool_candidates(n, tool_orientation(n, np.array([1.0, 0, 0])),
                                            ReachConfig()):
        offset = ball_offset(n, quat, 0.02)
        axis = quat_to_matrix(quat)[:, 2]
        centre = offset - 0.02 * axis  # the tool point is the ball's tip on its axis
        # the ball's centre sits one radius straight above the contact point
        np.testing.assert_allclose(centre, 0.02 * n, atol=1e-12)
        assert np.linalg.norm(offset) == pytest.approx(0.04 * np.sin(np.radians(tilt) / 2))


def reach_case(code: str):
    """An atlas point of the default scene: (position, normal, straight quaternion)."""
    T = placement((0.55, 0.2, 0.0), 90.0)
    point = next(a for a in ATLAS if a.code == code)
    n = T[:3, :3] @ point.normal
    return T[:3, :3] @ point.position + T[:3, 3], n, tool_orientation(n, np.array([1.0, 0, 0]))


FR3_START = np.array([0.0, -0.7, 0.0, -2.6, 0.0, 1.9, 0.785])
BOX = (np.array([0.15, -0.75, 0.0]), np.array([0.85, 0.75, 0.8]))


@pytest.mark.parametrize("code", ["LI11", "SP10"])
def test_the_planner_tilts_the_ball_where_the_straight_tool_cannot_go(code):
    arm = arm_kinematics("fr3", 0.0466)
    p, n, quat = reach_case(code)
    cfg = PlannerConfig(press_s=0.5)
    start = arm.forward(FR3_START)
    args = (arm, FR3_START, start.translation, matrix_to_quat(start.rotation), p, n, quat,
            np.zeros((0, 3)), 6.0, "press", cfg)
    with pytest.raises(PlanningError):
        plan_reachable(*args, ReachConfig(max_tilt_deg=0, yaw_step_deg=0), *BOX)
    reached = plan_reachable(*args, ReachConfig(), *BOX)
    plan = reached.plan
    assert 0 < reached.tilt_deg <= 30
    press = np.array([ph == "press" for ph in plan.phases])
    # the arm's own forward kinematics puts the ball on the target, the force along the normal
    for q, position in zip(plan.joints[press][::10], plan.positions[press][::10], strict=True):
        pose = arm.forward(q)
        np.testing.assert_allclose(pose.translation, position, atol=1e-3)
        centre = pose.translation - 0.02 * pose.rotation[:, 2]
        assert np.linalg.norm(centre - (p + 0.02 * n)) < 1e-3
    np.testing.assert_allclose(plan.normals, np.repeat(n[None], len(plan.normals), 0))
    assert np.all((plan.positions >= BOX[0]) & (plan.positions <= BOX[1]))
    # the way to the point above the target is a continuous joint path (the contact phase
    # then puts the reference on the surface at once: the force loop searches down to it)
    way_in = plan.joints[:plan.phases.index("contact")]
    assert np.all(np.abs(np.diff(way_in[:-1], axis=0)) < 0.05)
    contact = plan.phases.index("contact")
    speeds = np.linalg.norm(np.diff(plan.positions[:contact], axis=0), axis=1) / cfg.dt
    assert speeds.max() <= cfg.max_speed * 1.05


def test_a_target_facing_away_from_the_arm_is_refused_naming_reach():
    arm = arm_kinematics("fr3", 0.0466)
    p, n, quat = reach_case("SP6")
    start = arm.forward(FR3_START)
    with pytest.raises(PlanningError, match=r"within 30 deg of the normal works \(reach"):
        plan_reachable(arm, FR3_START, start.translation, matrix_to_quat(start.rotation), p, n,
                       quat, np.zeros((0, 3)), 6.0, "press", PlannerConfig(press_s=0.5),
                       ReachConfig(restarts=1), *BOX)


def baxter_press_plan(arm, press_s: float):
    """A 6 N press 20 cm below and inwards of the Baxter's neutral pose, the tool axis
    turned straight down (keeping the neutral pose's turn about it); (plan, target)."""
    start = arm.forward(arm.posture)
    target = start.translation + np.array([-0.1, -0.1, -0.2])
    tilt, _ = Rotation.align_vectors([[0.0, 0.0, -1.0]], [start.rotation[:, 2]])
    down = (tilt * Rotation.from_matrix(start.rotation)).as_quat()
    plan = plan_massage(start.translation, Rotation.from_matrix(start.rotation).as_quat(),
                        target, np.array([0, 0, 1.0]), down, np.zeros((0, 3)), 6.0, "press",
                        PlannerConfig(press_s=press_s))
    return plan, target


def test_baxter_left_arm_ik_follows_a_massage_plan_within_its_limits():
    arm = arm_kinematics("baxter_left", 0.05)
    assert arm.nq == 7
    start = arm.forward(arm.posture)
    plan, _ = baxter_press_plan(arm, press_s=1.0)
    plan = solve_plan(arm, plan, arm.posture)
    assert plan.joints.shape == (len(plan.t_s), 7)
    assert np.all(plan.joints >= arm.lower - 1e-9) and np.all(plan.joints <= arm.upper + 1e-9)
    reached = np.array([arm.forward(q).translation for q in plan.joints])
    np.testing.assert_allclose(reached, plan.positions, atol=1e-3)
    # joint motion stays smooth: no sample jumps further than the arm could move in dt,
    # except onto the contact phase's surface point (the force loop searches down to it
    # from wherever the tool is; the controller never steps there)
    step = np.abs(np.diff(plan.joints, axis=0))
    onto_surface = plan.phases.index("contact") - 1
    step = np.delete(step, onto_surface, axis=0).max(axis=0)
    assert np.all(step <= arm.velocity_limit * 0.02 * 0.5), step
    with pytest.raises(PlanningError, match="out of reach"):
        arm.solve(pin.SE3(np.eye(3), start.translation + [1.5, 0.0, 0.0]), arm.posture)


# --- force control ----------------------------------------------------------------------

def test_pid_integral_is_clamped():
    pid = PID(1.0, 1.0, 0.0, 0.05, 2.0)
    for _ in range(100):
        pid.step(10.0, 0.1)
    assert pid.integral == 2.0


def run_controller(force_at, steps=300):
    ctrl = HybridForceController(ForceConfig())
    t = np.array([0.0, 100.0])
    pos = np.array([[0.4, 0.0, 0.1]] * 2)
    quat = np.array([[1.0, 0, 0, 0]] * 2)
    normals = np.array([[0.0, 0, 1]] * 2)
    tool = np.array([0.4, 0.0, 0.14])
    outs = []
    for k in range(steps):
        f = force_at(tool)
        plan = Plan(t, pos, quat, np.array([6.0, 6.0]), ["press", "press"], normals,
                    np.zeros((2, 0)))
        out = ctrl.step(k * 0.01, plan, tool, np.array([0, 0, -f, 0, 0, 0]), np.eye(4))
        outs.append(out)
        tool = tool + 0.5 * (out.position - tool)  # a stiff arm following the reference
    return outs


def test_force_loop_searches_then_regulates_to_the_target():
    # tissue: 1000 N/m below z = 0.1
    outs = run_controller(lambda p: max(0.0, (0.1 - p[2]) * 1000.0), steps=800)
    forces = np.array([o.force_measured_n for o in outs])
    assert forces[:50].max() == 0.0  # free space: searching down
    assert abs(forces[-100:].mean() - 6.0) < 0.3
    assert forces.max() < 15.0


def test_the_reference_never_jumps_where_the_plan_changes_phase():
    # approach ends at the 4 cm standoff, contact starts on the surface: a step in the plan
    ctrl = HybridForceController(ForceConfig())
    t = np.arange(0.0, 2.0, 0.02)
    contact = t >= 1.0
    pos = np.where(contact[:, None], [0.4, 0.0, 0.1], [0.4, 0.0, 0.14])
    phases = ["contact" if c else "approach" for c in contact]
    forces = np.where(contact, 6.0, 0.0)
    tool = np.array([0.4, 0.0, 0.14])
    previous = None
    for k in range(150):
        plan = Plan(t, pos, np.array([[1.0, 0, 0, 0]] * len(t)), forces, phases,
                    np.array([[0.0, 0, 1]] * len(t)), np.zeros((len(t), 0)))
        out = ctrl.step(k * 0.01, plan, tool, np.zeros(6), np.eye(4))
        assert np.linalg.norm(out.twist[:3]) < 0.05, (k, out.twist)
        if previous is not None:  # 1 cm/s search, 10 ms periods
            assert np.linalg.norm(out.position - previous) < 1e-3, (k, out.position)
        previous = out.position
        tool = out.position.copy()  # in free space the arm follows the reference


def press_with_a_biased_sensor(config: ForceConfig) -> np.ndarray:
    """The true normal force of a press (approach 1 s in free space, then 6 N on 1000 N/m
    tissue) read through an FR3-like estimate: bias, noise and lag."""
    sensor = WrenchSensor(WrenchNoise(bias_n=1.5, noise_n=0.15, lag_s=0.01),
                          np.random.default_rng(3))
    sensor.bias = np.array([0.5, -0.8, 1.2, 0.0, 0.0, 0.0])  # 1.2 N along the normal
    ctrl = HybridForceController(config)
    t = np.arange(0.0, 10.0, 0.02)
    contact = t >= 1.0
    pos = np.where(contact[:, None], [0.4, 0.0, 0.1], [0.4, 0.0, 0.13])
    phases = ["approach" if not c else "contact" if s < 2.0 else "press"
              for c, s in zip(contact, t, strict=True)]
    plan = Plan(t, pos, np.array([[1.0, 0, 0, 0]] * len(t)), np.where(contact, 6.0, 0.0),
                phases, np.array([[0.0, 0, 1]] * len(t)), np.zeros((len(t), 0)))
    tool, true = np.array([0.4, 0.0, 0.13]), []
    for k in range(1000):
        f = max(0.0, (0.1 - tool[2]) * 1000.0)
        true.append(f)
        reading = sensor.step(np.array([0, 0, -f, 0, 0, 0]), 0.01)
        out = ctrl.step(k * 0.01, plan, tool, reading, np.eye(4))
        tool = tool + 0.5 * (out.position - tool)
    return np.array(true)


def test_the_controller_tares_in_free_space_and_holds_the_true_force():
    true = press_with_a_biased_sensor(ForceConfig())
    assert abs(true[-200:].mean() - 6.0) < 0.15
    # with no tare (no reading counts as free space) the bias's 1.2 N goes into the body
    untared = press_with_a_biased_sensor(ForceConfig(tare_band_n=0.0))
    assert abs(untared[-200:].mean() - 7.2) < 0.15


def test_force_over_cap_stops():
    outs = run_controller(lambda p: 20.0, steps=2)
    assert outs[0].mode == "stop" and outs[0].position[2] > 0.14


# --- safety, motion, session ------------------------------------------------------------

def test_command_checks():
    cfg = SafetyConfig()
    tool = np.array([0.4, 0.0, 0.2])
    q = np.array([1.0, 0, 0, 0])
    assert command_problem(tool, q, tool, cfg) is None
    assert "NaN" in command_problem(np.array([np.nan, 0, 0.2]), q, tool, cfg)
    assert "workspace" in command_problem(np.array([1.2, 0, 0.2]), q, tool, cfg)
    assert "from the tool" in command_problem(tool + [0, 0, 0.2], q, tool, cfg)
    assert "unit" in command_problem(tool, q * 2, tool, cfg)
    np.testing.assert_allclose(rate_limit(tool, tool + [0.1, 0, 0], 0.1, 0.01), tool + [0.001,
                                                                                         0, 0])
    np.testing.assert_allclose(retreat_point(tool, np.array([0, 0, -10.0, 0, 0, 0]), 0.02),
                               tool + [0, 0, 0.02])


def test_scripted_motion_kinds():
    shift = BodyMotionScript("shift", 1.0, 2.0, (0.01, 0, 0), (0, 0, 3.0))
    assert np.allclose(body_offset(shift, 0.5), np.eye(4))
    assert np.allclose(body_offset(shift, 5.0)[:3, 3], [0.01, 0, 0])
    jerk = BodyMotionScript("jerk", 1.0, 2.0, (0.02, 0, 0))
    assert body_offset(jerk, 1.05)[0, 3] == pytest.approx(0.01)
    assert body_offset(jerk, 1.1)[0, 3] == pytest.approx(0.02)
    drift = BodyMotionScript("drift", 0.0, 2.0, (0.01, 0, 0))
    assert np.isclose(body_offset(drift, 4.0)[0, 3], 0.02)
    with pytest.raises(ValueError, match="unknown"):
        BodyMotionScript("wobble")


def test_summary_flags_failures():
    log = SessionLog(force_t=list(np.arange(0, 4, 0.01)), force_n=[6.0] * 400,
                     phases=["press"] * 400, force_target_n=6.0, contact_errors_mm=[2.0],
                     normal_error_deg=3.0, max_force_n=6.5)
    good = summarize(log, 20.0, SessionLimits())
    assert good["ok"] and good["force_rms_error_n"] == 0.0 and good["contact_s"] > 3.9
    log.max_force_n = 16.0
    bad = summarize(log, 20.0, SessionLimits())
    assert not bad["ok"] and "cap" in bad["problems"][0]


def test_force_is_scored_on_the_truth_when_there_is_one_settled_and_whole():
    t = list(np.arange(0, 4, 0.01))
    # the controller reads 6 N throughout (its own signal); the body truly gets 6.5 N, and
    # 9 N in the 0.3 s after the first contact (an overshoot the settled figure leaves out)
    log = SessionLog(force_t=t, force_n=[6.0] * 400, phases=["press"] * 400,
                     force_target_n=6.0, contact_errors_mm=[1.0, 2.0, 6.0])
    log.true_t = t
    log.true_force_n = [9.0 if s < 0.3 else 6.5 for s in t]
    log.true_phases = ["press"] * 400
    s = summarize(log, 20.0, SessionLimits())
    assert s["force_source"] == "truth"
    assert s["force_rms_error_n"] == pytest.approx(0.5)
    assert s["force_rms_error_whole_n"] == pytest.approx(np.sqrt((30 * 9 + 370 * 0.25) / 400))
    assert s["measured_force_rms_error_n"] == 0.0
    assert s["acupoint_error_mm"] == 2.0 and s["acupoint_error_max_mm"] == 6.0
    assert s["acupoint_error_mean_mm"] == pytest.approx(3.0)
    live = summarize(SessionLog(force_t=t, force_n=[6.0] * 400, phases=["press"] * 400,
                                force_target_n=6.0), 20.0, SessionLimits())
    assert live["force_source"] == "measured" and live["force_rms_error_n"] == 0.0


def test_the_session_watch_scores_contact_and_motion_on_the_truth_and_ends_after_release():
    from types import SimpleNamespace as Msg

    from tuina.operators.session import SessionEnding, SessionWatch

    watch = SessionWatch(SessionEnding(release_wait_s=5.0, replan_wait_s=15.0, timeout_s=60.0))
    acupoint = np.array([0.5, 0.2, 0.1])
    watch.on_target(Msg(code="ST36", normal=[0.0, 0.0, 1.0], path=[], source_stamp_ns=0))

    def truth(stamp: int, shift_m: float, contact_off_m: float) -> None:
        moved = acupoint + [shift_m, 0.0, 0.0]
        watch.heard(stamp)
        watch.on_truth(Msg(max_contact_force_n=6.2, acupoint_positions=list(moved),
                           acupoint_normals=[0.0, 0.0, 1.0], acupoint_codes=["ST36"],
                           body_quaternion=[0.0, 0.0, 0.0, 1.0],
                           contact_point=list(moved + [contact_off_m, 0.0, 0.0]),
                           contact_force=[0.0, 0.0, 6.0]), stamp)

    ms = 1_000_000
    for k in range(100):  # 1 s of press, the body shifting 1 mm per 10 ms frame
        stamp = k * 10 * ms
        watch.heard(stamp)
        watch.on_command(Msg(phase="press", force_measured_n=6.0, force_target_n=6.0), stamp)
        truth(stamp, k * 0.001, 0.003)
        # the tracker's motion since frame 0 is 1 mm short of the truth's
        watch.on_body_motion(Msg(status="ok", rotation=list(np.eye(3).ravel()),
                                 translation=[max(k - 1, 0) * 0.001, 0.0, 0.0],
                                 reference_stamp_ns=0), stamp)
    log = watch.log
    assert log.contact_errors_mm == pytest.approx([3.0] * 100)
    assert log.follow_mm == pytest.approx([3.0] * 100)
    assert log.tracking_err_mm == pytest.approx([0.0] + [1.0] * 99)
    assert log.first_contact_s == 0.0 and log.force_target_n == 6.0
    assert log.true_force_n == pytest.approx([-6.0] * 100)  # [0, 0, 6] pulls the skin out
    assert watch.due() is None
    said = watch.on_event(Msg(kind="error", detail="robot: estop", fault="estop"), 100 * ms)
    assert "release" in said and log.faults == ["estop"] and watch.due() is None
    watch.on_event(Msg(kind="released", detail="", fault=""), 101 * ms)
    assert watch.due() == ""  # ended, nothing else wrong


def test_coverage_calls_a_far_press_wrong_and_a_refusal_by_its_own_reason():
    from tuina.evaluation.coverage import outcome

    base = {"force_target_n": 6.0, "force_mean_n": 6.2, "normal_error_deg": 2.0,
            "contact_s": 2.0, "problems": [], "target": "ST36"}
    good = outcome({**base, "acupoint_error_mm": 2.0}, "ST36")
    assert good["outcome"] == "pressed" and good["within_bounds"]
    loose = outcome({**base, "acupoint_error_mm": 6.0}, "ST36")
    assert loose["outcome"] == "pressed" and not loose["within_bounds"]
    assert outcome({**base, "acupoint_error_mm": 24.0}, "ST36")["outcome"] == "wrong"
    # pressed well, but another point than the one asked for: wrong, never pressed
    other = outcome({**base, "acupoint_error_mm": 2.0}, "GB34-R")
    assert other["outcome"] == "wrong" and other["reason"] == "asked for GB34-R, grounded ST36"
    refused = outcome({**base, "contact_s": 0.0, "acupoint_error_mm": float("nan"),
                       "problems": ["robot: pose-fit: seen at 80 deg [error_event]; ...",
                                    "contact lasted 0.0 s (< 1.0 s)",
                                    "pose-fit: seen at 80 deg from the camera"]}, "ST36")
    assert refused["outcome"] == "refused"
    assert refused["reason"] == "pose-fit: seen at 80 deg from the camera"


def test_coverage_asks_for_every_point_side_in_words_that_parse_back_to_it():
    from tuina.operators.phantom import POINT_SIDES

    from tuina.evaluation.coverage import instruction

    for point in POINT_SIDES:
        parsed = parse_instruction(instruction(point)).acupoint
        assert parsed.code == point.code
        np.testing.assert_allclose(parsed.position, point.position)


def _surface_point(code: str, limb: str, fraction: float, lateral_deg: float):
    """A point on the phantom's surface, for the body-model checks."""
    from tuina.operators.phantom import Acupoint, _on_capsule, capsule

    position, normal, along = _on_capsule(capsule(limb), fraction, lateral_deg)
    return Acupoint(code, code, code, 0, position, normal, along)


def test_a_point_where_the_body_model_reaches_into_the_ball_is_refused_naming_the_part():
    from tuina.operators.grounding import ball_fit_problem
    from tuina.operators.phantom import POINT_SIDES

    # every atlas point-side has room for the 40 mm ball: the knee and the elbow are as wide
    # as the limb below them
    refused = {p.code: why for p in POINT_SIDES if (why := ball_fit_problem(p, 0.02, 0.003))}
    assert refused == {}
    # the back of the hand just past the wrist, under the forearm's round end
    wrist = _surface_point("WRIST", "hand_left", 0.1, 0.0)
    why = ball_fit_problem(wrist, 0.02, 0.003)
    assert "forearm left reaches 5.4 mm" in why and "WRIST" in why and "smaller ball" in why
    # the groin: the trunk reaches in
    groin = _surface_point("GROIN", "thigh_left", 0.15, -45.0)
    assert "trunk reaches" in ball_fit_problem(groin, 0.02, 0.003)
    assert ball_fit_problem(wrist, 0.012, 0.003) == ""  # a smaller ball fits
    assert ball_fit_problem(wrist, 0.02, 0.006) == ""  # or more clearance allowed


def test_a_point_whose_way_in_passes_another_limb_is_refused_naming_it():
    from tuina.operators.grounding import approach_problem
    from tuina.operators.phantom import POINT_SIDES

    # the legs lie apart: Sanyinjiao's way in on the shin's inner side passes the other shin
    # with room to spare, as does every other atlas point-side's
    blocked = {p.code: why for p in POINT_SIDES
               if (why := approach_problem(p, 0.02, 0.03, 0.15))}
    assert blocked == {}
    # a point facing straight at the other shin
    inner = _surface_point("INNER", "shin_left", 0.5, -75.0)
    why = approach_problem(inner, 0.02, 0.03, 0.15)
    assert "passes 23 mm from the shin right" in why and "strike" in why
    assert approach_problem(inner, 0.02, 0.01, 0.15) == ""  # a slimmer tool passes



def seen_default_scene() -> np.ndarray:
    """What a camera above sees of the default scene's phantom, with the table around it."""
    from tuina.operators.geometry import transform_points
    from tuina.operators.phantom import surface_samples

    points, _ = surface_samples(0.01)
    table = np.array([[x, y, 0.0] for x in np.arange(0.2, 0.9, 0.02)
                      for y in np.arange(-0.8, 0.9, 0.02)])
    return np.vstack([transform_points(placement((0.55, 0.2, 0.0), 90.0), points), table])


def sp6_right_case():
    """Sanyinjiao on the right shin's inner side: it faces the arm across the left shin."""
    from tuina.operators.arms import arm_model
    from tuina.operators.phantom import POINT_SIDES

    T = placement((0.55, 0.2, 0.0), 90.0)
    point = next(p for p in POINT_SIDES if p.code == "SP6-R")
    p, n = T[:3, :3] @ point.position + T[:3, 3], T[:3, :3] @ point.normal
    arm = arm_kinematics("fr3", 0.0466)
    start = arm.forward(FR3_START)
    args = (arm, FR3_START, start.translation, matrix_to_quat(start.rotation), p, n,
            tool_orientation(n, np.array([1.0, 0, 0])), np.zeros((0, 3)), 6.0, "press",
            PlannerConfig(press_s=0.5))
    return args, arm_model("fr3", 0.0466).parts, p


def test_the_arm_passing_through_what_the_camera_sees_is_named():
    from tuina.operators.planner import ClearanceConfig, collision_problem

    args, parts_of, p = sp6_right_case()
    plan = plan_reachable(*args, ReachConfig(max_tilt_deg=0), *BOX).plan
    seen = seen_default_scene()

    def collision(seen_points, cfg=None):
        return collision_problem(parts_of, plan.joints, plan.phases, seen_points, p,
                                 cfg or ClearanceConfig())

    # straight along the normal, the hand comes in low across the left shin
    why = collision(seen)
    assert "the hand would come within 45 mm" in why and "approach" in why
    # each part with its own radius: the links strike it too
    links = ClearanceConfig(hand_radius_m=0.0, tool_radius_m=0.0)
    assert "the arm would come within 70 mm" in collision(seen, links)
    # the tool touches only the contact zone
    assert collision(seen, ClearanceConfig(link_radius_m=0.0, hand_radius_m=0.0)) == ""
    assert collision(np.zeros((0, 3))) == ""
    # the contact itself is no collision: only the points around the target
    near = seen[np.linalg.norm(seen - p, axis=1) < 0.05]
    assert len(near) and collision(near) == ""


def test_the_planner_tilts_the_ball_to_keep_the_arm_clear_of_the_body_or_refuses():
    from tuina.operators.planner import ClearanceConfig, collision_problem

    args, parts_of, p = sp6_right_case()
    seen = seen_default_scene()

    def collision(joints, phases):
        return collision_problem(parts_of, joints, phases, seen, p, ClearanceConfig())

    with pytest.raises(PlanningError, match=r"collision \d+.*would come within \d+ mm of the body"):
        plan_reachable(*args, ReachConfig(max_tilt_deg=0), *BOX, collision)
    reached = plan_reachable(*args, ReachConfig(), *BOX, collision)
    assert reached.tilt_deg > 0
    assert collision(reached.plan.joints, reached.plan.phases) == ""


def test_seen_points_leave_the_arm_out_and_keep_the_body_and_table():
    from tuina.operators.arms import arm_model
    from tuina.operators.geometry import project, transform_points
    from tuina.operators.planner import seen_points

    parts = arm_model("fr3", 0.0466).parts(FR3_START)
    cam = np.eye(4)
    cam[:3, :3] = np.diag([1.0, -1.0, -1.0])  # looking straight down
    cam[:3, 3] = [0.5, 0.0, 1.0]
    K = np.array([[400.0, 0, 160], [0, 400.0, 120], [0, 0, 1]])
    table = np.array([[x, y, 0.0] for x in np.arange(0.3, 0.7, 0.01)
                      for y in np.arange(-0.2, 0.2, 0.01)])
    tool = parts[2][-1]
    depth = np.full((240, 320), np.nan, np.float32)  # a 640x480 image, every 2nd pixel
    for point in (table, tool[None]):
        uv = project(K, np.linalg.inv(cam), point).round().astype(int) // 2
        z = transform_points(np.linalg.inv(cam), point)[:, 2]
        ok = (uv[:, 0] >= 0) & (uv[:, 0] < 320) & (uv[:, 1] >= 0) & (uv[:, 1] < 240)
        depth[uv[ok, 1], uv[ok, 0]] = z[ok]
    seen = seen_points(depth, K, cam, 2, np.array([0.1, -0.5, -0.1]),
                       np.array([0.9, 0.5, 0.9]), parts, (0.15, 0.15, 0.05))
    assert len(seen) > 1000 and np.all(np.abs(seen[:, 2]) < 0.01)  # the table, not the tool


def test_the_skin_along_a_stroke_is_the_contact_not_an_obstacle():
    from tuina.operators.planner import ClearanceConfig, collision_problem

    def parts_of(q):  # only a tool, standing on the skin at x = q[0]
        far = np.array([[0.0, 5.0, 5.0], [0.0, 5.0, 6.0]])
        return far, far, np.array([[q[0], 0.0, 0.15], [q[0], 0.0, 0.0]])

    joints = np.linspace(0.0, 0.1, 11)[:, None]  # a 10 cm stroke along x
    phases = ["stroke"] * len(joints)
    skin = np.column_stack([np.linspace(-0.02, 0.12, 60), np.zeros(60), np.zeros(60)])
    cfg = ClearanceConfig(every=1)
    target = np.zeros((1, 3))
    # the stroke's end is 10 cm from the target: its skin reads as struck, unless the
    # contact zone follows the path
    assert "the tool would come within 25 mm" in collision_problem(
        parts_of, joints, phases, skin, target, cfg)
    path = np.column_stack([np.linspace(0.0, 0.1, 11), np.zeros(11), np.zeros(11)])
    assert collision_problem(parts_of, joints, phases, skin, path, cfg) == ""
    bump = np.vstack([skin, [[0.05, 0.0, 0.1]]])  # something standing on the path
    assert "during the stroke" in collision_problem(parts_of, joints, phases, bump, path, cfg)


def test_the_normal_disc_grows_with_range_to_keep_the_tilt_noise_down():
    # a flat surface 1.6 m from the camera, with a far stereo camera's noise (sigma 5 mm)
    depth = plane_depth(-0.7) + np.random.default_rng(0).normal(0, 0.005, (480, 640))
    depth = depth.astype(np.float32)

    def mean_error_deg(**kwargs) -> float:
        rng = np.random.default_rng(1)
        errors = [np.degrees(np.arccos(min(1.0, surface_normal(
            depth, K, BASE_T_CAM, np.array([u, v]), rng, **kwargs) @ [0, 0, 1.0])))
            for u in (200, 320, 440) for v in (160, 240, 320)]
        return float(np.mean(errors))

    grown = mean_error_deg()
    fixed = mean_error_deg(full_range_m=10.0)  # the 15 mm disc at any range
    assert grown < 2.5 and fixed > 3 * grown  # measured 1.9 and 8.8 deg


def test_grounding_requests_ask_again_after_motion_and_drop_late_answers():
    from types import SimpleNamespace as Msg

    from tuina.operators.grounding import GroundingRequests

    ms = 1_000_000
    requests = GroundingRequests(reground_delay_s=0.5, max_answer_age_s=1.0, max_stale_answers=2)
    assert requests.on_reground(0) is None  # nothing asked yet
    press = Msg(text="press Zusanli", stroke_px=[])
    requests.on_instruction(press)
    assert requests.take(10 * ms, drawn=True) is None  # a named point is not a drawing
    assert requests.take(10 * ms, drawn=False) is press and requests.take(11 * ms) is None
    kind, line = requests.on_reground(100 * ms)
    assert kind == "say" and "press Zusanli" in line
    assert requests.take(599 * ms) is None and requests.take(600 * ms) is press
    # an answer about a frame from before the motion is dropped and asked again
    requests.heard(700 * ms)
    kind, why = requests.answer_problem(50 * ms, press)
    assert kind == "retry" and "moved" in why and requests.pending is press
    assert requests.answer_problem(650 * ms, press) is None  # fresh: the count starts over
    requests.heard(3000 * ms)
    assert requests.answer_problem(650 * ms, press)[0] == "retry"
    kind, why = requests.answer_problem(700 * ms, press)
    assert kind == "error" and "2 answers in a row came too late" in why
    drawn = Msg(text="stroke", stroke_px=[1.0, 2.0, 3.0, 4.0])
    requests.on_instruction(drawn)
    assert requests.take(3001 * ms, drawn=True) is drawn
    kind, why = requests.on_reground(3100 * ms)
    assert kind == "error" and "draw it again" in why and requests.pending is None


def test_a_controller_abort_finds_the_named_point_again_but_never_a_drawing():
    from types import SimpleNamespace as Msg

    from tuina.operators.grounding import GroundingRequests

    ms = 1_000_000
    requests = GroundingRequests(reground_delay_s=0.5, max_answer_age_s=1.0, max_stale_answers=2)
    assert requests.on_abort(0) is None  # nothing asked yet
    press = Msg(text="press Zusanli", stroke_px=[])
    requests.on_instruction(press)
    assert requests.on_abort(5 * ms) is None  # not grounded yet: it is pending already
    assert requests.take(10 * ms) is press
    kind, line = requests.on_abort(100 * ms)
    assert kind == "say" and "press Zusanli" in line and "backed off" in line
    assert requests.on_abort(120 * ms) is None  # the tracker's reground came first, or twice
    assert requests.take(599 * ms) is None and requests.take(600 * ms) is press
    drawn = Msg(text="stroke", stroke_px=[1.0, 2.0, 3.0, 4.0])
    requests.on_instruction(drawn)
    assert requests.take(700 * ms) is drawn
    assert requests.on_abort(800 * ms) is None and requests.pending is None


def test_the_back_points_lie_on_the_bladder_line_in_spine_order_reached_prone():
    from tuina.operators.phantom import (
        ATLAS,
        CUN_BACK,
        ball_intrusion_model,
        body_distance,
        right_side,
        side_of,
        spine_x,
    )

    shu = [a for a in ATLAS if a.code in ("BL13", "BL15", "BL17", "BL18", "BL20", "BL21",
                                          "BL23", "BL25")]
    assert [a.code for a in shu] == ["BL13", "BL15", "BL17", "BL18", "BL20", "BL21", "BL23",
                                     "BL25"]
    xs = [a.position[0] for a in shu]
    assert xs == sorted(xs, reverse=True)  # T3 down to L4
    assert spine_x("T12") - spine_x("L1") > spine_x("T11") - spine_x("T12")  # lumbar taller
    for a in shu:
        assert a.posture == "prone" and side_of(a) == "left"
        assert abs(a.position[1]) == pytest.approx(1.5 * CUN_BACK)  # 1.5 cun off the spine
        assert abs(body_distance(a.position)[0]) < 1e-6 and a.normal[2] > 0.9
        assert ball_intrusion_model(a, 0.02) == (0.0, "")  # a convex back: the ball fits
        twin = right_side(a)
        assert twin.code == f"{a.code}-R" and side_of(twin) == "right" and twin.posture == "prone"
        assert twin.position[1] == pytest.approx(-a.position[1])
    # prone, the person's left is the -y side; the umbilicus lies between L2 and L4
    bl23 = next(a for a in ATLAS if a.code == "BL23")
    assert bl23.position[1] < 0 and spine_x("L4") < 0.18 < spine_x("L2")
    st36 = next(a for a in ATLAS if a.code == "ST36")
    assert st36.posture == "supine" and st36.position[1] > 0 and side_of(st36) == "left"
    assert len({a.number for a in ATLAS}) == len(ATLAS)  # one number each


def test_a_named_path_and_the_back_points_parse_in_every_language():
    from tuina.operators.phantom import ATLAS

    bl13 = next(a for a in ATLAS if a.code == "BL13")
    bl25 = next(a for a in ATLAS if a.code == "BL25")
    line = parse_instruction("stroke the bladder line lightly")
    assert line.acupoint.code == "BL13" and line.technique == "stroke"
    assert line.pressure == "light"
    assert line.stroke_length_m == pytest.approx(np.linalg.norm(bl25.position - bl13.position))
    assert 0.25 < line.stroke_length_m < 0.4
    assert parse_instruction("推膀胱经").acupoint.code == "BL13"
    assert parse_instruction("stroke the bladder line on the right").acupoint.code == "BL13-R"
    assert parse_instruction("按肾俞").acupoint.code == "BL23"
    assert parse_instruction("press Shenshu on the right").acupoint.code == "BL23-R"
    assert parse_instruction("press point number 19").acupoint.code == "BL23"
    assert parse_instruction("press Jianjing").acupoint.code == "GB21"
    assert parse_instruction("stroke Zusanli").stroke_length_m == 0.0  # the graph's length


def test_a_point_of_the_other_posture_is_refused_with_the_way_out():
    from tuina.operators.grounding import GroundingError, check_posture
    from tuina.operators.phantom import ATLAS

    bl23 = next(a for a in ATLAS if a.code == "BL23")
    st36 = next(a for a in ATLAS if a.code == "ST36")
    check_posture(bl23, "prone")
    check_posture(st36, "supine")
    with pytest.raises(GroundingError, match=r"BL23 \(Shenshu\) is reached prone and the body "
                                             r"lies supine \(BODY_POSTURE\).*ST36"):
        check_posture(bl23, "supine")
    with pytest.raises(GroundingError, match="reached supine.*BODY_POSTURE: supine.*BL23"):
        check_posture(st36, "prone")


def test_a_world_waits_for_the_ports_a_world_just_ended_still_holds():
    from types import SimpleNamespace

    from tuina.sim.world import MassageWorld

    class Server:
        def __init__(self, taken: int):
            self.taken = taken

        def init(self) -> None:
            if self.taken:
                self.taken -= 1
                raise OSError("Could not find available hostname among 1 tested candidates")

    world = MassageWorld.__new__(MassageWorld)  # the port logic alone, no physics
    world.cfg = SimpleNamespace(hostname="127.0.0.1")
    world.server = Server(taken=3)  # freed after three tries
    world._serve(wait_s=5.0)
    assert world.server.taken == 0
    world.server = Server(taken=1000)
    with pytest.raises(OSError, match="ports on 127.0.0.1 stayed taken for 0.5 s .*another "
                                      "simulated world runs on this machine"):
        world._serve(wait_s=0.5)
