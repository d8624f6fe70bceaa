"""``tuina eval perception``: VBRM's positioning protocol in the simulated world.

A camera beside the head of the table looks down along the body, so the nine targets
fall into near / middle / far groups by their distance from it (0.7 to 1.6 m). Acupoints
are bilateral: "-R" names the right-side point of a (left-side) atlas entry. The camera is first
calibrated with the marker on the FR3 (tuina calibrate's procedure); every later number
uses those calibrated extrinsics, so calibration error is part of the positioning error.
Per target and trial one frame is rendered with D455-like depth noise, then

- click (VBRM's protocol): the operator clicks the target's centre in the image, 1 px
  (sigma) off where it appears, as in a zoomed view (whole-pixel clicks are reported too);
  pose-fit turns it into a 3D point and a surface normal;
- atlas (HMR-1's pipeline): grounding registers the phantom model to the body cloud and
  projects the acupoint, pose-fit takes the projected pixel.

Errors are 3D distances to the true acupoint on the skin, and angles to its true normal.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tuina import jsontext
from tuina.calibrate import calibrate_sim
from tuina.evaluation.seeds import POSTURES, over_seeds, posture_of, spread_text
from tuina.operators.calibration import CalibrationError, pose_error
from tuina.operators.geometry import (
    angle_between_deg,
    intrinsics_matrix,
    project,
    quat_to_matrix,
    transform_points,
)
from tuina.operators.grounding import GroundingError, body_cloud, ground_acupoint
from tuina.operators.phantom import ATLAS, placement, right_side
from tuina.operators.posefit import NoDepthError, fit_target, point_at_pixel
from tuina.operators.sensor import DepthNoise, apply_depth_noise, quantize_depth

# visible from the evaluation camera, three per distance band ("-R": the right-side point),
# by the posture the body lies in (even seeds supine, odd seeds prone)
TARGETS_BY_POSTURE = {
    "supine": ("CV12", "ST25", "ST25-R", "PC6", "PC6-R", "SP10", "ST36-R", "LR3", "LR3-R"),
    "prone": ("BL20", "BL21-R", "BL23", "BL23-R", "BL25", "BL25-R", "BL40-R", "BL57", "BL57-R"),
}
GROUPS = ("near", "middle", "far")
NOMINAL_BODY = ((0.55, 0.2, 0.0), 90.0)  # where grounding expects the body
TRUE_BODY = ((0.562, 0.188, 0.0), 91.5)  # where it really lies
CLICK_PX = 1.0  # the operator's click: normal error, pixels (sigma)
ROI_MIN = np.array([0.1, -0.9, -0.05])
ROI_MAX = np.array([1.0, 0.95, 0.3])


@dataclass(frozen=True)
class TargetResult:
    """Errors at one target, averaged over the trials."""

    code: str
    group: str
    distance_m: float
    click_mm: float
    atlas_mm: float
    normal_deg: float
    click_trials_mm: list[float]


def eval_world_config() -> Any:
    """The evaluation world: a camera beside the head looking along the body."""
    from tuina.sim.world import WorldConfig

    return WorldConfig(
        body_position=TRUE_BODY[0], body_yaw_deg=TRUE_BODY[1], body_offset_mm=0.0,
        body_offset_deg=0.0,
        camera_position=(0.6, 0.8, 0.8), camera_target=(0.5, -0.1, 0.08),
        camera_up=(0.0, 0.0, 1.0))


def _check_visible(code: str, pixel: np.ndarray, point: np.ndarray, depth: np.ndarray,
                   base_T_camera: np.ndarray) -> None:
    h, w = depth.shape
    if not (0 <= pixel[0] < w and 0 <= pixel[1] < h):
        raise GroundingError(f"{code} is outside the evaluation camera's image")
    z_true = transform_points(np.linalg.inv(base_T_camera), point[None])[0, 2]
    z_seen = depth[int(pixel[1]), int(pixel[0])]
    if not abs(z_seen - z_true) < 0.005:
        raise GroundingError(f"{code} is hidden from the evaluation camera "
                             f"({z_seen:.3f} m seen, {z_true:.3f} m expected)")


def run(seed: int = 0, poses: int = 20, trials: int = 3, log: Any = print,
        posture: str | None = None) -> dict[str, Any]:
    """Calibrate, then position the nine targets of ``posture`` (default: the seed's);
    returns the result as one dict."""
    from tuina.sim.world import MassageWorld

    posture = posture or posture_of(seed)
    targets = TARGETS_BY_POSTURE[posture]

    cfg = eval_world_config()
    log(f"calibrating the camera from {poses} arm poses ...")
    cal_run = calibrate_sim(cfg, poses, seed, log=lambda _line: None)
    base_T_cam = cal_run.calibration.base_T_camera
    cal_m, cal_deg = pose_error(base_T_cam, cal_run.true_base_T_camera)
    cal_mm = cal_m * 1e3
    for line in cal_run.skipped:
        log(f"  skipped {line}")
    log(f"calibration: {len(cal_run.samples)} poses, {cal_mm:.2f} mm, {cal_deg:.3f} deg "
        "from the true camera pose")

    parked = replace(cfg, initial_q=(-2.4, -0.6, 0.0, -2.6, 0.0, 1.9, 0.785))
    with MassageWorld(parked) as world:
        K = intrinsics_matrix(*world.intrinsics())  # as the camera reports them
        K_image = intrinsics_matrix(*world.true_intrinsics())  # where things appear
        true_cam = world.base_T_camera()
        truth = world.truth()
        depth_clean = world.render().depth
    base_T_body = np.eye(4)
    base_T_body[:3, :3] = quat_to_matrix(np.asarray(truth["body_quaternion"]))
    base_T_body[:3, 3] = truth["body_position"]
    points = {p.code: p for a in ATLAS for p in (a, right_side(a))}
    codes = list(targets)
    positions = transform_points(base_T_body, np.array([points[c].position for c in codes]))
    normals = np.array([points[c].normal for c in codes]) @ base_T_body[:3, :3].T
    nominal = placement(*NOMINAL_BODY)
    noise = DepthNoise()

    distances = {c: float(np.linalg.norm(positions[codes.index(c)] - true_cam[:3, 3]))
                 for c in targets}
    order = sorted(targets, key=distances.get)
    group_of = {c: GROUPS[i // 3] for i, c in enumerate(order)}
    click_err: dict[str, list[float]] = {c: [] for c in targets}
    atlas_err: dict[str, list[float]] = {c: [] for c in targets}
    normal_err: dict[str, list[float]] = {c: [] for c in targets}
    whole_px_err: list[float] = []
    for trial in range(trials):
        rng_noise = np.random.default_rng([seed, 1000 + trial])
        depth = apply_depth_noise(depth_clean, K[0, 0], noise, rng_noise)
        depth = quantize_depth(depth)  # the camera's z16 stream
        rng = np.random.default_rng([seed, trial])
        body = body_cloud(depth, K, base_T_cam, ROI_MIN, ROI_MAX, rng)
        for code in targets:
            i = codes.index(code)
            # the operator clicks where the point appears in the image, within CLICK_PX
            # (sigma) of it: a zoomed view, a steady hand
            seen = project(K_image, np.linalg.inv(true_cam), positions[i][None])[0]
            click = seen + rng.normal(0.0, CLICK_PX, 2)
            if trial == 0:
                _check_visible(code, np.round(seen), positions[i], depth_clean, true_cam)
            p, n = fit_target(depth, K, base_T_cam, click, rng)
            click_err[code].append(float(np.linalg.norm(p - positions[i])) * 1e3)
            p_whole = point_at_pixel(depth, K, base_T_cam, np.round(click))
            whole_px_err.append(float(np.linalg.norm(p_whole - positions[i])) * 1e3)
            normal_err[code].append(angle_between_deg(n, normals[i]))
            found = ground_acupoint(points[code], body, depth, K, base_T_cam, nominal)
            p_atlas, _ = fit_target(depth, K, base_T_cam, found.centre_px, rng)
            atlas_err[code].append(float(np.linalg.norm(p_atlas - positions[i])) * 1e3)
        log(f"trial {trial + 1}/{trials}: click mean "
            f"{np.mean([click_err[c][-1] for c in targets]):.2f} mm, atlas mean "
            f"{np.mean([atlas_err[c][-1] for c in targets]):.2f} mm")

    results = [TargetResult(c, group_of[c], distances[c], float(np.mean(click_err[c])),
                            float(np.mean(atlas_err[c])), float(np.mean(normal_err[c])),
                            click_err[c]) for c in order]
    all_click = np.concatenate([r.click_trials_mm for r in results])
    summary: dict[str, Any] = {}
    for g in GROUPS:
        members = [r for r in results if r.group == g]
        summary[f"{g}_mm"] = float(np.mean([r.click_mm for r in members]))
        summary[f"atlas_{g}_mm"] = float(np.mean([r.atlas_mm for r in members]))
        summary[f"{g}_distance_m"] = [round(r.distance_m, 3) for r in members]
    summary.update(
        overall_mean_mm=float(all_click.mean()), overall_std_mm=float(all_click.std()),
        atlas_overall_mean_mm=float(np.mean([atlas_err[c] for c in targets])),
        whole_pixel_click_mean_mm=float(np.mean(whole_px_err)),
        normal_deg=float(np.mean([r.normal_deg for r in results])),
        calibration_mm=cal_mm, calibration_deg=cal_deg,
        calibration_poses=len(cal_run.samples),
        calibration_residual_mm=float(np.mean(cal_run.calibration.residuals_m) * 1e3),
        trials=trials, seed=seed, posture=posture,
        targets=[{"code": r.code, "group": r.group, "distance_m": round(r.distance_m, 3),
                  "click_mm": round(r.click_mm, 3), "atlas_mm": round(r.atlas_mm, 3),
                  "normal_deg": round(r.normal_deg, 3)} for r in results],
    )
    return summary


SEED_FIGURES = {**{f"{g}_mm": "max" for g in GROUPS}, **{f"atlas_{g}_mm": "max" for g in GROUPS},
                "overall_mean_mm": "max", "atlas_overall_mean_mm": "max", "normal_deg": "max",
                "calibration_mm": "max", "calibration_deg": "max"}


def run_seeds(seeds: int = 5, poses: int = 20, trials: int = 3,
              log: Any = print, posture: str | None = None) -> dict[str, Any]:
    """``run`` on seeds 0..seeds-1 (calibration poses, depth noise, clicks, the posture
    unless ``posture`` is given): the first seed's table, and every headline figure's mean
    over the seeds with its spread."""
    runs = []
    for seed in range(seeds):
        log(f"seed {seed}, {posture or posture_of(seed)}")
        runs.append(run(seed, poses, trials, log, posture))
    first = runs[0]
    distances = {k: first[k] for k in first if k.endswith("_distance_m")}
    return {**first, **over_seeds(runs, SEED_FIGURES), **distances, "seeds": seeds,
            "per_seed": [{"seed": r["seed"], "posture": r["posture"],
                          **{k: r[k] for k in SEED_FIGURES}} for r in runs]}


def table(summary: dict[str, Any]) -> str:
    """The result as a Markdown table plus the headline numbers."""
    lines = ["| target | group | distance (m) | click error (mm) | atlas error (mm) | "
             "normal error (deg) |", "|---|---|---|---|---|---|"]
    lines += [f"| {t['code']} | {t['group']} | {t['distance_m']:.3f} | {t['click_mm']:.2f} | "
              f"{t['atlas_mm']:.2f} | {t['normal_deg']:.2f} |" for t in summary["targets"]]
    lines += ["", "| group | click (mm) | atlas (mm) | VBRM (mm) |", "|---|---|---|---|"]
    vbrm = {"near": "2.20", "middle": "4.54", "far": "6.29"}
    lines += [f"| {g} | {summary[f'{g}_mm']:.2f} | {summary[f'atlas_{g}_mm']:.2f} | {vbrm[g]} |"
              for g in GROUPS]
    lines += [f"| overall | {summary['overall_mean_mm']:.2f} ± {summary['overall_std_mm']:.2f} "
              f"| {summary['atlas_overall_mean_mm']:.2f} | 4.3 ± 2.6 |", "",
              f"surface normal error: {summary['normal_deg']:.2f} deg mean",
              f"clicks rounded to whole pixels: {summary['whole_pixel_click_mean_mm']:.2f} mm "
              "mean (a pixel spans up to 7 mm of grazing skin at 1.3 m)",
              f"over {summary['seeds']} seeds (targets above: seed 0, {summary['posture']}; "
              "even seeds supine, odd ones prone): click near "
              f"{spread_text(summary, 'near_mm', 'mm')}, middle "
              f"{spread_text(summary, 'middle_mm', 'mm')}, far "
              f"{spread_text(summary, 'far_mm', 'mm')}; atlas near "
              f"{spread_text(summary, 'atlas_near_mm', 'mm')}, middle "
              f"{spread_text(summary, 'atlas_middle_mm', 'mm')}, far "
              f"{spread_text(summary, 'atlas_far_mm', 'mm')}",
              f"calibration: {summary['calibration_mm']:.2f} mm, "
              f"{summary['calibration_deg']:.3f} deg from the true camera pose "
              f"({summary['calibration_poses']} poses, residual "
              f"{summary['calibration_residual_mm']:.2f} mm)"]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tuina eval perception`` options."""
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1, even ones supine, "
                        "odd ones prone (default 5, ~1 min each on two cores); the group "
                        "figures are means over them")
    parser.add_argument("--posture", choices=POSTURES,
                        help="every seed's body in this posture (default: the seed's)")
    parser.add_argument("--poses", type=int, default=20, help="calibration poses")
    parser.add_argument("--trials", type=int, default=3, help="noisy frames per target")


def main(args: Any) -> int:
    """``tuina eval perception``: print the table, or one JSON object with --json."""
    from tuina.sim.world import RenderingUnavailable

    quiet = args.json
    try:
        summary = run_seeds(args.seeds, args.poses, args.trials,
                            log=(lambda _line: None) if quiet else print, posture=args.posture)
    except (RenderingUnavailable, CalibrationError, GroundingError, NoDepthError) as err:
        print(f"tuina eval perception: error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(jsontext.dumps(summary))
    else:
        print(table(summary))
    return 0
