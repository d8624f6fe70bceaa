"""``tuina calibrate``: solve the camera extrinsics from a marker ball on the end-effector.

Sim graphs: the world of the graph is started with the marker mounted, the arm moves through
seeded poses in front of the camera (franky's motions on an FR3, position commands on a
Baxter), each rendered frame goes through the camera's
depth model, the marker is detected in it, and the weighted SVD solution is written to the
camera node's EXTRINSICS_FILE. Live rigs: record the end-effector poses and marker centres
and solve them with ``--pairs``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from tuina.config import ConfigError
from tuina.operators.calibration import (
    Calibration,
    CalibrationError,
    MarkerNotFound,
    calibration_poses,
    depth_weights,
    detect_marker,
    pose_error,
    positioning_errors,
    solve_with_marker_offset,
)
from tuina.operators.geometry import intrinsics_matrix, matrix_to_quat, quat_to_matrix
from tuina.operators.sensor import DepthNoise, apply_depth_noise, quantize_depth

EE_COLUMNS = ["ee_x", "ee_y", "ee_z", "ee_qx", "ee_qy", "ee_qz", "ee_qw"]
MARKER_COLUMNS = ["marker_x", "marker_y", "marker_z"]


@dataclass(frozen=True)
class PoseSample:
    """One calibration pose: where the robot says its end-effector is, what the camera saw."""

    base_T_ee: np.ndarray
    marker_camera: np.ndarray


@dataclass(frozen=True)
class SimCalibrationRun:
    """A calibration in the simulated world, with the truth to score it against."""

    calibration: Calibration
    samples: list[PoseSample]
    true_base_T_camera: np.ndarray
    skipped: list[str]
    positioning_m: np.ndarray  # errors at points of the body's region (positioning_errors)


# where the body lies in the sim worlds (base frame, m): the region a calibration is scored on
BODY_REGION = (np.array([0.3, -0.6, -0.15]), np.array([0.8, 0.45, 0.2]))


SIM_EXTRINSICS = Path(__file__).resolve().parents[1] / "calibration" / "sim_d455.json"


def sim_extrinsics() -> np.ndarray:
    """base_T_camera as `tuina calibrate dataflows/sim.yml` measured it (what the sim
    graph's camera node reports; the evaluations use it, never the world's true pose)."""
    return np.asarray(json.loads(SIM_EXTRINSICS.read_text())["base_T_camera"],
                      float).reshape(4, 4)


def graph_nodes(graph_path: Path) -> dict[str, dict[str, Any]]:
    """Nodes of a dataflow YAML by executable name (``path:``)."""
    graph = yaml.safe_load(graph_path.read_text())
    return {str(n.get("path", "")): n for n in graph.get("nodes", [])}


def solve_samples(samples: list[PoseSample], marker_in_ee: np.ndarray) -> Calibration:
    """Weighted SVD solution of the samples' marker centres against the robot's poses."""
    if len(samples) < 3:
        raise CalibrationError(f"only {len(samples)} poses saw the marker; at least 3 are "
                               "needed: bring the marker into the camera's view")
    cam = np.array([s.marker_camera for s in samples])
    ee = np.array([s.base_T_ee for s in samples])
    return solve_with_marker_offset(cam, ee, np.asarray(marker_in_ee, float),
                                    depth_weights(cam))


def samples_frame(samples: list[PoseSample]) -> pl.DataFrame:
    """Samples as a table (base_T_ee as position + quaternion xyzw, marker in camera frame)."""
    rows = []
    for s in samples:
        q = matrix_to_quat(s.base_T_ee[:3, :3])
        rows.append([*s.base_T_ee[:3, 3], *q, *s.marker_camera])
    return pl.DataFrame(np.array(rows), schema=EE_COLUMNS + MARKER_COLUMNS, orient="row")


def read_samples(path: Path) -> list[PoseSample]:
    """Samples from a CSV or Parquet file with the columns of ``samples_frame``."""
    try:
        df = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    except (OSError, pl.exceptions.PolarsError) as err:
        first_line = (str(err).splitlines() or ["unreadable"])[0]
        raise CalibrationError(f"cannot read {path}: {first_line}") from None
    missing = [c for c in EE_COLUMNS + MARKER_COLUMNS if c not in df.columns]
    if missing:
        raise CalibrationError(f"{path} lacks columns {', '.join(missing)}; it needs "
                               f"{', '.join(EE_COLUMNS + MARKER_COLUMNS)}")
    ee = df.select(EE_COLUMNS).to_numpy().astype(float)
    marker = df.select(MARKER_COLUMNS).to_numpy().astype(float)
    samples = []
    for row, (row_ee, row_m) in enumerate(zip(ee, marker, strict=True), start=1):
        T = np.eye(4)
        T[:3, 3] = row_ee[:3]
        try:
            T[:3, :3] = quat_to_matrix(row_ee[3:])
        except ValueError:
            raise CalibrationError(f"{path} row {row}: the end-effector quaternion "
                                   f"{row_ee[3:].tolist()} is not a rotation") from None
        samples.append(PoseSample(T, row_m))
    return samples


def write_extrinsics(path: Path, calibration: Calibration, marker_in_ee: np.ndarray,
                     source: str) -> None:
    """Write the extrinsics file atomically: a reader never sees half a file."""
    res = calibration.residuals_m * 1e3
    data = {
        "base_T_camera": np.round(calibration.base_T_camera, 9).ravel().tolist(),
        "poses": len(res),
        "residual_mm": {"mean": round(float(res.mean()), 4), "max": round(float(res.max()), 4),
                        "per_pose": np.round(res, 4).tolist()},
        "marker_in_ee_m": list(map(float, marker_in_ee)),
        "marker_in_ee_solved_m": None if calibration.marker_in_ee is None
        else [round(float(v), 6) for v in calibration.marker_in_ee],
        "source": source,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)


def _settle(ee_pose: Any, timeout_s: float = 2.0, tolerance_m: float = 2e-5) -> np.ndarray:
    """Wait until the end-effector pose ``ee_pose()`` stops moving; returns it."""
    previous = ee_pose()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.1)
        current = ee_pose()
        if np.linalg.norm(current[:3, 3] - previous[:3, 3]) < tolerance_m:
            return current
        previous = current
    return previous


def _franky_mover(hostname: str) -> Any:
    """Moves a (simulated) FR3 to an end-effector pose with franky; returns the pose it
    reports after settling."""
    import franky

    robot = franky.Robot(hostname, realtime_config=franky.RealtimeConfig.Ignore)
    robot.relative_dynamics_factor = 0.2

    def move(pose: np.ndarray) -> np.ndarray:
        target = franky.Affine(pose[:3, 3].tolist(), matrix_to_quat(pose[:3, :3]).tolist())
        try:
            robot.move(franky.CartesianMotion(target))
        except franky.ControlException as err:
            robot.recover_from_errors()
            raise CalibrationError(f"the arm cannot reach it ({err})") from None
        return _settle(lambda: np.array(robot.state.O_T_EE.matrix))
    return move


def _baxter_mover(world: Any, timeout_s: float = 6.0) -> Any:
    """Moves the simulated Baxter's gripper to a pose with joint position commands, resent
    within the arm's command timeout; returns the gripper pose from the measured joints."""
    from tuina.operators.arms import PlanningError, arm_kinematics
    from tuina.sim.baxter import POSITION_MODE

    arm = arm_kinematics("baxter_left", 0.0)  # the gripper frame: baxter_interface's endpoint
    baxter = world.baxter
    baxter.enabled = True

    def move(pose: np.ndarray) -> np.ndarray:
        import pinocchio as pin

        try:
            q = arm.solve(pin.SE3(pose[:3, :3], pose[:3, 3]), baxter.q())
        except PlanningError as err:
            raise CalibrationError(f"the arm cannot reach it ({err})") from None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and np.max(np.abs(baxter.q() - q)) > 2e-3:
            baxter.command(POSITION_MODE, q, world.time_s)
            time.sleep(0.05)

        def gripper() -> np.ndarray:
            baxter.command(POSITION_MODE, q, world.time_s)
            return arm.forward(baxter.q()).homogeneous
        return _settle(gripper)
    return move


def calibrate_sim(world_cfg: Any, count: int, seed: int, depth_noise: bool = True,
                  centre: tuple[float, float, float] | None = None,
                  half_extent_m: tuple[float, float, float] = (0.12, 0.12, 0.08),
                  log: Any = print) -> SimCalibrationRun:
    """Calibrate the camera of a simulated world by moving its arm through ``count`` poses.

    The poses fill a box around ``centre`` (default: 0.7 m along the drawn optical axis).
    """
    from tuina.sim.world import MARKER_IN_EE_M, MARKER_RADIUS_M, MassageWorld

    cfg = replace(world_cfg, calibration_marker=True)
    rng = np.random.default_rng(seed)
    noise = DepthNoise()
    samples: list[PoseSample] = []
    skipped: list[str] = []
    with MassageWorld(cfg) as world:
        nominal = world.nominal_base_T_camera()
        if centre is None:
            centre = nominal[:3, 3] + 0.7 * nominal[:3, 2]
        to_camera = nominal[:3, 3] - np.asarray(centre)
        facing = np.degrees(np.arctan2(to_camera[1], to_camera[0]))
        poses = calibration_poses(np.asarray(centre), np.asarray(half_extent_m), count, rng,
                                  facing_yaw_deg=facing)
        K = intrinsics_matrix(*world.intrinsics())
        move = _franky_mover(cfg.hostname) if cfg.robot == "fr3" else _baxter_mover(world)
        for i, pose in enumerate(poses):
            try:
                base_T_ee = move(pose)
            except CalibrationError as err:
                skipped.append(f"pose {i + 1}: {err}")
                continue
            frame = world.render()
            depth = frame.depth
            if depth_noise:
                depth = apply_depth_noise(depth, K[0, 0], noise, np.random.default_rng([seed, i]))
                depth = quantize_depth(depth)  # the camera's z16 stream
            try:
                obs = detect_marker(frame.rgb, depth, K, MARKER_RADIUS_M)
            except MarkerNotFound as err:
                skipped.append(f"pose {i + 1}: {err}")
                continue
            samples.append(PoseSample(base_T_ee, obs.centre_camera))
            log(f"pose {i + 1:2d}/{count}: end-effector {np.round(base_T_ee[:3, 3], 3).tolist()}"
                f" m, marker at {obs.centre_camera[2]:.3f} m from {obs.pixels} px")
        truth = world.base_T_camera()
        K_true = intrinsics_matrix(*world.true_intrinsics())
    calibration = solve_samples(samples, np.asarray(MARKER_IN_EE_M))
    grid = np.stack(np.meshgrid(*(np.linspace(lo, hi, 9) for lo, hi in zip(*BODY_REGION,
                                                                             strict=True)),
                                indexing="ij"), axis=-1).reshape(-1, 3)
    positioning = positioning_errors(grid, calibration.base_T_camera, K, truth, K_true,
                                     (cfg.width, cfg.height))
    return SimCalibrationRun(calibration, samples, truth, skipped, positioning)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``tuina calibrate`` options."""
    parser.add_argument("graph", help="dataflow whose camera is calibrated, e.g. dataflows/sim.yml")
    parser.add_argument("--poses", type=int, default=20, help="arm poses to visit (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the poses and depth noise")
    parser.add_argument("--out", default=None,
                        help="extrinsics file (default: the camera node's EXTRINSICS_FILE)")
    parser.add_argument("--pairs", default=None,
                        help="solve recorded poses instead (CSV/Parquet: ee_x..ee_qw, marker_x..z)")
    parser.add_argument("--marker-in-ee", type=float, nargs=3, default=None,
                        metavar=("X", "Y", "Z"),
                        help="marker centre in the end-effector frame, m (with --pairs)")
    parser.add_argument("--save-pairs", default=None, help="also write the collected poses (CSV)")
    parser.add_argument("--no-noise", action="store_true", help="sim: skip the depth noise model")


def main(args: Any) -> int:
    """Run ``tuina calibrate`` with parsed arguments; returns the exit status."""
    graph = Path(args.graph)

    def error(text: str) -> int:
        print(f"tuina calibrate: error: {text}", file=sys.stderr)
        return 2

    if args.pairs and args.marker_in_ee is None:
        return error("--pairs needs --marker-in-ee X Y Z (the marker centre on the tool)")
    if not graph.is_file():
        return error(f"no dataflow at {graph}; the graphs are in dataflows/")
    nodes = graph_nodes(graph)
    camera_env = (nodes.get("tuina-camera") or {}).get("env") or {}
    out = args.out or camera_env.get("EXTRINSICS_FILE")
    if not out:
        return error(f"{graph} names no EXTRINSICS_FILE in its camera node; pass --out PATH")
    out_path = Path(os.path.normpath(graph.parent / out if not args.out else out))
    try:
        if args.pairs:
            marker = np.asarray(args.marker_in_ee, float)
            samples = read_samples(Path(args.pairs))
            calibration = solve_samples(samples, marker)
            source = f"pairs file {args.pairs}"
            truth = None
        elif "tuina-world" in nodes:
            from tuina.settings.world import world_config_from_env
            from tuina.sim.world import MARKER_IN_EE_M, RenderingUnavailable

            marker = np.asarray(MARKER_IN_EE_M)
            try:
                world_cfg = world_config_from_env(graph, nodes["tuina-world"].get("env"))
                run = calibrate_sim(world_cfg, args.poses, args.seed,
                                    depth_noise=not args.no_noise)
            except RenderingUnavailable as err:
                return error(str(err))
            except OSError as err:
                return error(f"cannot serve the simulated arm: {err}; is another simulated "
                             "session running?")
            for line in run.skipped:
                print(f"skipped {line}")
            calibration, samples, truth = run.calibration, run.samples, run.true_base_T_camera
            positioning = run.positioning_m
            source = f"simulated world of {graph.name}, {args.poses} poses, seed {args.seed}"
            if args.save_pairs:
                samples_frame(samples).write_csv(args.save_pairs)
        else:
            return error(f"{graph} has no simulated world; on a live rig record the "
                         "end-effector poses and marker centres and pass --pairs FILE")
    except (CalibrationError, ConfigError) as err:
        return error(str(err))
    write_extrinsics(out_path, calibration, marker, source)
    res = calibration.residuals_m * 1e3
    T = calibration.base_T_camera
    print(f"camera position {np.round(T[:3, 3], 4).tolist()} m, {len(res)} poses, residual "
          f"mean {res.mean():.2f} mm, max {res.max():.2f} mm -> {out_path}")
    if res.max() > 5.0:
        print("warning: a residual above 5 mm: check the marker offset and the poses",
              file=sys.stderr)
    if truth is not None:
        dt, dr = pose_error(T, truth)
        print(f"against the simulated truth: {dt * 1e3:.2f} mm, {dr:.3f} deg (camera pose); "
              f"{positioning.mean() * 1e3:.2f} mm mean, {positioning.max() * 1e3:.2f} mm max "
              f"at {len(positioning)} points of the body's region, the reported intrinsics' "
              "error included")
    return 0
