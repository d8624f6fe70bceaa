"""``tuina eval tracking``: follow a moving body, scored against the simulated truth.

Scenarios (each one a scripted motion of the phantom, as the world's BODY_MOTION_* keys
set it): translations of 10 and 20 mm, rotations of 3 deg (yaw: ~28 mm at ST36) and 5 deg
(roll), a slow drift that goes on, and a jerk (15 mm within 0.1 s).

Two parts per scenario:

- frames: the motion rendered at 30 Hz from the sim graph's camera, with the arm pressing
  on the moving ST36 (so it is in view and must be masked), D455-like noise, z16 at 1 mm.
  The icp-tracker's own code (the node's defaults) runs on them paced at the camera rate,
  on this machine: registration error at the acupoint against the true motion on the frames
  it judged ok, the error of the motion it published (what the controller follows: the
  last good one held on a frame that was not ok) on every frame, time from the depth
  message to the body_motion message, achieved update rate.
- session (unless ``--frames-only``): the whole sim graph under dora with the motion
  starting 1.5 s into the press; the session node scores the tool's contact point against
  the moving acupoint (in contact, each contact's first 200 ms left out) and the drift of
  that offset in the body's frame from where it sat in the first 0.5 s (what following
  failed to keep, without the perception error that set the offset), the tracker's
  published motion against the truth, and counts aborts and re-groundings.

Every seed (``--seeds``) places the body elsewhere around its expected pose and draws the
sensors' noise anew, and lies the body in turn supine (even seeds: the arm on ST36) and prone
(odd seeds: on BL23-R, Shenshu); each headline figure is the mean over the seeds with its
spread.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tuina.calibrate import sim_extrinsics
from tuina.evaluation.seeds import (
    merged,
    over_seeds,
    posture_of,
    posture_overrides,
    seed_overrides,
    spread_text,
    target_point,
)
from tuina.evaluation.sessions import evaluate_graph, run_session, unknown_choice
from tuina.operators.arms import FR3_POSTURE, arm_kinematics
from tuina.operators.geometry import (
    intrinsics_matrix,
    quat_to_matrix,
    tool_orientation,
    transform_points,
)
from tuina.operators.motion import BodyMotionScript, body_offset
from tuina.operators.phantom import Acupoint
from tuina.operators.sensor import DepthNoise, apply_depth_noise
from tuina.operators.tracking import BodyTracker, roi_points, rotation_angle_deg

FPS = 30.0
PRESS_DEPTH_M = 0.003  # the ball sits this far into the skin in the rendered frames


@dataclass(frozen=True)
class Scenario:
    """One scripted body motion."""

    name: str
    kind: str
    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    duration_s: float = 2.0

    def script(self, start_s: float) -> BodyMotionScript:
        """The world's motion script starting at ``start_s``."""
        return BodyMotionScript(self.kind, start_s, self.duration_s,
                                tuple(np.multiply(self.translation_mm, 1e-3)),
                                self.rotation_deg)


SCENARIOS = (
    Scenario("shift 10 mm", "shift", (10.0, 0.0, 0.0)),
    Scenario("shift 20 mm", "shift", (12.0, -16.0, 0.0)),
    Scenario("yaw 3 deg", "shift", rotation_deg=(0.0, 0.0, 3.0), duration_s=3.0),
    Scenario("roll 5 deg", "shift", rotation_deg=(5.0, 0.0, 0.0)),
    Scenario("drift 2.5 mm/s", "drift", (5.0, 0.0, 0.0)),
    Scenario("jerk 15 mm", "jerk", (15.0, 0.0, 0.0)),
)


# --- frames: the tracker on pre-rendered 30 Hz frames ------------------------------------

def _pressing_joints(ik: Any, body: np.ndarray, q0: np.ndarray, acu: Acupoint) -> np.ndarray:
    """Joints that put the massage ball on the acupoint ``acu`` of the body at ``body``."""
    import pinocchio as pin

    point = transform_points(body, acu.position[None])[0]
    normal = body[:3, :3] @ acu.normal
    quat = tool_orientation(normal, np.array([1.0, 0.0, 0.0]))
    return ik.solve(pin.SE3(quat_to_matrix(quat), point - normal * PRESS_DEPTH_M), q0)


def render_scenario(world: Any, scenario: Scenario, ik: Any, seed: int, acu: Acupoint,
                    before_s: float = 0.5, after_s: float = 1.0) -> dict[str, Any]:
    """Noisy z16 frames of one scenario at 30 Hz, the arm pressing on ``acu``, with the
    truth and the arm's joints."""
    from tuina.sim.world import nominal_base_T_body

    nominal = nominal_base_T_body(world.cfg)
    script = scenario.script(before_s)
    span = before_s + (0.3 if scenario.kind == "jerk" else scenario.duration_s) + after_s
    K = intrinsics_matrix(*world.intrinsics())
    noise = DepthNoise()
    q = FR3_POSTURE.copy()
    frames = []
    for k in range(int(span * FPS) + 1):
        t = k / FPS
        body = nominal @ body_offset(script, t)
        q = _pressing_joints(ik, body, q, acu)
        depth = world.render_posed(q, body).depth
        noisy = apply_depth_noise(depth, K[0, 0], noise, np.random.default_rng([seed, k]))
        raw = np.nan_to_num(noisy / 1e-3, nan=0.0)
        frames.append({"stamp_ns": int(round(t * 1e9)), "z16": np.rint(raw).astype(np.uint16),
                       "q": q.copy(), "body": body})
    return {"frames": frames, "K": K, "base_T_camera": sim_extrinsics(), "acupoint": acu}


def track_scenario(rendered: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """Run the tracker on the frames paced at 30 Hz (newest frame first, as a camera with a
    one-frame queue delivers them) and score it."""
    import pyarrow as pa

    from tuina.messages import BodyMotion, Header, decode_depth
    from tuina.operators.arms import arm_model
    from tuina.settings.icp_tracker import tracker_config

    frames, K, cam = rendered["frames"], rendered["K"], rendered["base_T_camera"]
    h, w = frames[0]["z16"].shape
    roi_min, roi_max = np.asarray(cfg["ROI_MIN"]), np.asarray(cfg["ROI_MAX"])
    arm = arm_model(cfg["ROBOT"], cfg["TOOL_LENGTH_M"])
    tracker = BodyTracker(tracker_config(cfg), cfg["SEED"])
    acu = rendered["acupoint"]

    def message(f: dict) -> tuple[pa.Array, dict]:
        meta = Header(f["stamp_ns"], 0, "camera_color_optical").to_metadata(
            width=w, height=h, encoding="z16", depth_scale=1e-3)
        return pa.array(f["z16"].reshape(-1)), meta

    ref = frames[0]
    tracker.set_reference(roi_points(decode_depth(*message(ref), cfg["STRIDE"]), K, cam,
                                     cfg["STRIDE"], roi_min, roi_max, sampled=True),
                          ref["stamp_ns"], arm.chain(ref["q"]), cfg["ARM_MASK_M"])
    p_ref = transform_points(ref["body"], acu.position[None])[0]
    messages = [message(f) for f in frames]
    times, t_err, r_err, rmse, statuses, published_err = [], [], [], [], [], []
    start = time.perf_counter()
    k = 1
    processed = 0
    first_start = last_end = 0.0
    while k < len(frames):
        due = start + k / FPS
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)
        # the newest frame that has arrived by now
        k = max(k, min(len(frames) - 1, int((time.perf_counter() - start) * FPS)))
        f = frames[k]
        t0 = time.perf_counter()
        first_start = first_start or t0
        points = roi_points(decode_depth(*messages[k], cfg["STRIDE"]), K, cam, cfg["STRIDE"],
                            roi_min, roi_max, sampled=True)
        est = tracker.update(points, f["stamp_ns"], arm.chain(f["q"]), cfg["ARM_MASK_M"])
        BodyMotion.from_estimate(est, tracker.reference_stamp_ns).to_arrow()
        last_end = time.perf_counter()
        times.append((last_end - t0) * 1e3)
        processed += 1
        statuses.append(est.status)
        truth = f["body"] @ np.linalg.inv(ref["body"])
        p_true = transform_points(truth, p_ref[None])[0]
        if est.status == "ok":
            t_err.append(float(np.linalg.norm(transform_points(est.estimate, p_ref[None])[0]
                                              - p_true)) * 1e3)
            r_err.append(rotation_angle_deg(est.estimate[:3, :3] @ truth[:3, :3].T))
            rmse.append(est.inlier_rmse)
        published_err.append(float(np.linalg.norm(
            transform_points(est.transform, p_ref[None])[0] - p_true)) * 1e3)
        k += 1
    # rate of the published motions: intervals between the first and the last of them
    elapsed = last_end - first_start
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    return {
        "frames": len(frames) - 1, "processed": processed,
        "update_hz": (processed - 1) / elapsed if elapsed > 0 else 0.0,
        "registration_ms_median": statistics.median(times),
        "registration_ms_p95": float(np.percentile(times, 95)),
        "translation_err_mm": float(np.mean(t_err)) if t_err else float("nan"),
        "translation_err_max_mm": float(np.max(t_err)) if t_err else float("nan"),
        "rotation_err_deg": float(np.mean(r_err)) if r_err else float("nan"),
        "rotation_err_max_deg": float(np.max(r_err)) if r_err else float("nan"),
        # every processed frame, the motion as published (ok or not)
        "published_err_mm": float(np.mean(published_err)) if published_err else float("nan"),
        "published_err_max_mm": float(np.max(published_err)) if published_err else float("nan"),
        "inlier_rmse_m": float(np.median(rmse)) if rmse else float("nan"),
        "statuses": counts,
        "motion_mm": float(np.linalg.norm(p_true - p_ref) * 1e3),
    }


# --- session: the whole graph under dora ----------------------------------------------------

def scenario_overrides(scenario: Scenario) -> dict[str, dict[str, Any]]:
    """The sim graph's env changes that run one scenario: the motion 1.5 s into a 6 s press."""
    return {
        "world": {"BODY_MOTION": scenario.kind, "BODY_MOTION_TRIGGER": "contact",
                  "BODY_MOTION_START_S": 1.5, "BODY_MOTION_DURATION_S": scenario.duration_s,
                  "BODY_MOTION_TRANSLATION_MM": ",".join(map(str, scenario.translation_mm)),
                  "BODY_MOTION_ROTATION_DEG": ",".join(map(str, scenario.rotation_deg))},
        "planner": {"PRESS_S": 6.0},
        "session": {"TIMEOUT_S": 90},
    }


# --- the evaluation ----------------------------------------------------------------------------

WORST = {"translation_err_mm": "max", "translation_err_max_mm": "max",
         "rotation_err_deg": "max", "rotation_err_max_deg": "max",
         "published_err_mm": "max", "published_err_max_mm": "max",
         "registration_ms_median": "max", "update_hz": "min", "inlier_rmse_m": "max",
         "follow_err_mm": "max", "follow_err_p95_mm": "max", "follow_err_max_mm": "max",
         "follow_drift_mm": "max", "follow_drift_max_mm": "max",
         "session_max_force_n": "max", "contact_breaks": "max"}


def run(graph: Path, seeds: int = 1, sessions: bool = True, log: Any = print,
        closed_loop: Collection[str] | None = None) -> dict[str, Any]:
    """Every scenario on seeds 0..seeds-1: each headline figure's mean over the seeds, its
    spread (mean, standard deviation, worst), the first seed's scenarios and every seed's
    own figures. ``closed_loop`` names the scenarios run as sessions (None: all of them)."""
    runs = [run_seed(graph, seed, sessions, log, closed_loop) for seed in range(seeds)]
    out = {"seeds": seeds, **over_seeds(runs, {k: v for k, v in WORST.items()
                                               if k in runs[0]}),
           "jerk_detected": all(r["jerk_detected"] for r in runs),
           "scenarios": runs[0]["scenarios"], "per_seed": runs}
    if sessions:
        out["sessions_ok"] = all(r["sessions_ok"] for r in runs)
        out["contact_breaks"] = int(sum(r["contact_breaks"] for r in runs))
    return out


def run_seed(graph: Path, seed: int, sessions: bool = True, log: Any = print,
             closed_loop: Collection[str] | None = None) -> dict[str, Any]:
    """Every scenario on one seed: frames first, then (optionally) the closed loop, on every
    scenario or those named in ``closed_loop``."""
    import open3d as o3d

    from tuina.config import graph_env, load
    from tuina.settings import icp_tracker
    from tuina.settings.world import world_config_from_env
    from tuina.sim.world import MassageWorld

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    envs = {n["id"]: n.get("env") for n in yaml.safe_load(graph.read_text())["nodes"]}
    posture = posture_of(seed)
    acu = target_point(posture)
    drawn = merged(seed_overrides(seed), posture_overrides(posture))
    tracker_cfg = load("icp-tracker", icp_tracker.PARAMS, graph_env(
        graph, {**(envs.get("icp-tracker") or {}), **drawn["icp-tracker"]}))
    o3d.utility.set_max_threads(tracker_cfg["OPEN3D_THREADS"])  # as the node runs
    world_cfg = world_config_from_env(graph, {**(envs.get("world") or {}), **drawn["world"]})
    ik = arm_kinematics("fr3", tracker_cfg["TOOL_LENGTH_M"])
    log(f"seed {seed}: the body {posture}, rendering {len(SCENARIOS)} scenarios at {FPS:.0f} "
        f"Hz with the arm on {acu.code}")
    rendered = {}
    with MassageWorld(world_cfg) as world:
        for sc in SCENARIOS:
            rendered[sc.name] = render_scenario(world, sc, ik, seed, acu)
    rows: dict[str, dict[str, Any]] = {}
    for sc in SCENARIOS:
        rows[sc.name] = {"frames": track_scenario(rendered[sc.name], tracker_cfg)}
        r = rows[sc.name]["frames"]
        log(f"  {sc.name}: {r['translation_err_mm']:.2f} mm, {r['rotation_err_deg']:.3f} deg, "
            f"published {r['published_err_mm']:.2f} mm (max {r['published_err_max_mm']:.2f}), "
            f"{r['registration_ms_median']:.1f} ms, {r['update_hz']:.1f} Hz, {r['statuses']}")
    if sessions:
        with tempfile.TemporaryDirectory(prefix="tuina-eval-tracking-") as tmp:
            for i, sc in enumerate(SCENARIOS):
                if closed_loop is not None and sc.name not in closed_loop:
                    continue
                log(f"session: {sc.name}, seed {seed}")
                rows[sc.name]["session"] = run_session(
                    graph, merged(drawn, scenario_overrides(sc)), Path(tmp),
                    f"scenario-{i}-{seed}", sc.name)
                s = rows[sc.name]["session"]
                log(f"  follow {s['follow_err_mm']:.2f} mm (p95 {s['follow_err_p95_mm']:.2f}, max "
                    f"{s['follow_err_max_mm']:.2f}), drift {s['follow_drift_mm']:.2f} mm (max "
                    f"{s['follow_drift_max_mm']:.2f}), "
                    f"force {s['force_mean_n']:.2f} N, max {s['max_force_n']:.1f} N, aborts "
                    f"{len(s['aborts'])}, regrounds {s['regrounds']}, ok {s['ok']}"
                    + ("" if s["ok"] else f": {'; '.join(s.get('problems', []))}"))
    return {"seed": seed, "posture": posture, "target": acu.code, **summarize(rows)}


def summarize(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Headline numbers over the scenarios the tracker should follow (all but the jerk)."""
    follow = [n for n, sc in zip(rows, SCENARIOS, strict=True) if sc.kind != "jerk"]
    frames = [rows[n]["frames"] for n in follow]
    out: dict[str, Any] = {
        "translation_err_mm": float(np.mean([f["translation_err_mm"] for f in frames])),
        "translation_err_max_mm": float(np.max([f["translation_err_max_mm"] for f in frames])),
        "rotation_err_deg": float(np.mean([f["rotation_err_deg"] for f in frames])),
        "rotation_err_max_deg": float(np.max([f["rotation_err_max_deg"] for f in frames])),
        "published_err_mm": float(np.max([f["published_err_mm"] for f in frames])),
        "published_err_max_mm": float(np.max([f["published_err_max_mm"] for f in frames])),
        "registration_ms_median": float(np.median(
            [rows[n]["frames"]["registration_ms_median"] for n in rows])),
        "update_hz": float(np.min([rows[n]["frames"]["update_hz"] for n in rows])),
        "inlier_rmse_m": float(np.median([f["inlier_rmse_m"] for f in frames])),
        "jerk_detected": all(rows[n]["frames"]["statuses"].get("large_motion", 0) == 1
                             for n, sc in zip(rows, SCENARIOS, strict=True)
                             if sc.kind == "jerk"),
        "scenarios": rows,
    }
    sessions = [rows[n]["session"] for n in follow if "session" in rows[n]]
    every_session = [row["session"] for row in rows.values() if "session" in row]
    if sessions:
        out.update(
            follow_err_mm=float(np.max([s["follow_err_mm"] for s in sessions])),
            follow_err_p95_mm=float(np.max([s["follow_err_p95_mm"] for s in sessions])),
            follow_err_max_mm=float(np.max([s["follow_err_max_mm"] for s in sessions])),
            follow_drift_mm=float(np.max([s["follow_drift_mm"] for s in sessions])),
            follow_drift_max_mm=float(np.max([s["follow_drift_max_mm"] for s in sessions])),
            session_max_force_n=float(np.max([s["max_force_n"] for s in every_session])),
            sessions_ok=all(s["ok"] for s in every_session),
            contact_breaks=int(sum(s["contact_breaks"] for s in sessions)),
        )
    return out


def table(summary: dict[str, Any]) -> str:
    """The result as Markdown tables."""
    target = summary["per_seed"][0]["target"]
    lines = [f"| scenario | motion at {target} (mm) | error (mm, mean / max) | error (deg, "
             "mean / max) | depth->motion (ms, median / p95) | updates (Hz) | statuses |",
             "|---|---|---|---|---|---|---|"]
    for name, row in summary["scenarios"].items():
        f = row["frames"]
        lines.append(f"| {name} | {f['motion_mm']:.1f} | {f['translation_err_mm']:.2f} / "
                     f"{f['translation_err_max_mm']:.2f} | {f['rotation_err_deg']:.3f} / "
                     f"{f['rotation_err_max_deg']:.3f} | {f['registration_ms_median']:.1f} / "
                     f"{f['registration_ms_p95']:.1f} | {f['update_hz']:.1f} | "
                     f"{', '.join(f'{k} {v}' for k, v in f['statuses'].items())} |")
    if any("session" in r for r in summary["scenarios"].values()):
        lines += ["", "| scenario (closed loop) | follow error (mm, mean / p95 / max) | drift "
                  "(mm, mean / max) | tracking error (mm) | force (N, mean / max) | "
                  "body_motion (Hz) | aborts | re-groundings | ok |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, row in summary["scenarios"].items():
            s = row.get("session")
            if s is None:
                continue
            lines.append(f"| {name} | {s['follow_err_mm']:.2f} / {s['follow_err_p95_mm']:.2f} / "
                         f"{s['follow_err_max_mm']:.2f} | {s['follow_drift_mm']:.2f} / "
                         f"{s['follow_drift_max_mm']:.2f} | {s['tracking_err_mm']:.2f} | "
                         f"{s['force_mean_n']:.2f} / "
                         f"{s['max_force_n']:.1f} | {s['body_motion_hz']:.1f} | "
                         f"{len(s['aborts'])} | {s['regrounds']} | {s['ok']} |")
    n = summary["seeds"]
    postures = ", ".join(f"{r['seed']} {r['posture']}" for r in summary["per_seed"])
    lines += ["", f"the tables: seed 0; over {n} seed{'s' * (n > 1)} ({postures}; mean ± std, "
              "worst), the jerk left out:",
              "registration error at the acupoint on ok frames: "
              f"{spread_text(summary, 'translation_err_mm', 'mm')} mean, "
              f"{spread_text(summary, 'translation_err_max_mm', 'mm')} max; "
              f"{spread_text(summary, 'rotation_err_deg', 'deg', 3)} mean",
              "published motion at the acupoint, every frame: "
              f"{spread_text(summary, 'published_err_mm', 'mm')} mean, "
              f"{spread_text(summary, 'published_err_max_mm', 'mm')} max",
              f"depth -> body motion: {spread_text(summary, 'registration_ms_median', 'ms', 1)}"
              f" median; {spread_text(summary, 'update_hz', 'Hz', 1)} at a {FPS:.0f} Hz camera"]
    if "follow_err_mm" in summary:
        lines.append("tool to moving acupoint in contact (worst scenario): "
                     f"{spread_text(summary, 'follow_err_mm', 'mm')} mean, "
                     f"{spread_text(summary, 'follow_err_p95_mm', 'mm')} p95, "
                     f"{spread_text(summary, 'follow_err_max_mm', 'mm')} max; drift from the "
                     f"offset it was found with {spread_text(summary, 'follow_drift_mm', 'mm')} "
                     f"mean, {spread_text(summary, 'follow_drift_max_mm', 'mm')} max")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tuina eval tracking`` options."""
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seeds", type=int, default=3,
                        help="seeds 0..N-1, even ones supine, odd ones prone (default 3, not 5: "
                        "a seed is six sessions, ~7 min on two cores; ~10 s with --frames-only)")
    parser.add_argument("--graph", default="dataflows/sim.yml",
                        help="the sim graph whose tracker and world are evaluated")
    parser.add_argument("--frames-only", action="store_true",
                        help="only the tracker on rendered frames, no closed-loop sessions")
    parser.add_argument("--closed-loop", action="append", metavar="SCENARIO",
                        help="run the closed-loop session of this scenario only (repeatable; "
                        "every scenario's frames are tracked still); default: every scenario")


def main(args: Any) -> int:
    """``tuina eval tracking``: print the tables, or one JSON object with --json."""
    from tuina.sim.world import RenderingUnavailable

    if unknown_choice("tracking", "closed-loop", args.closed_loop,
                      [sc.name for sc in SCENARIOS]):
        return 2
    return evaluate_graph(
        "tracking", args,
        lambda graph, log: run(graph, args.seeds, sessions=not args.frames_only, log=log,
                               closed_loop=args.closed_loop),
        table, (RenderingUnavailable, RuntimeError, OSError))
