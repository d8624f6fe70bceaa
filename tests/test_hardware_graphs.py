"""The live hardware graphs, run without hardware: franka.yml against a franky-sim server on
127.0.0.1, its RealSense node playing a pyrealsense2 recording of the same scene."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FPS, SECONDS = 15, 36


@pytest.mark.e2e
def test_franka_graph_runs_a_session_against_franky_sim_with_a_recorded_camera(tmp_path):
    pytest.importorskip("pyrealsense2")
    from tuina.operators.sensor import DepthNoise, apply_depth_noise, quantize_depth

    from tuina.sim.world import MassageWorld, WorldConfig
    from tuina.testing import write_db3

    from .test_e2e import dora_run

    # the scene of the sim graph, seen by a 424x240 stream (a D455 mode) at 15 Hz
    world_cfg = WorldConfig(width=424, height=240)
    with MassageWorld(world_cfg) as world:
        fx, fy, cx, cy = world.intrinsics()
        still = world.render()
        camera = world.base_T_camera()
        rng = np.random.default_rng(0)

        def frames():
            for _ in range(FPS * SECONDS):
                depth = quantize_depth(apply_depth_noise(still.depth, fx, DepthNoise(), rng))
                raw = np.nan_to_num(depth / 0.001, nan=0.0).round().astype(np.uint16)
                yield raw, still.rgb

        recording = tmp_path / "d455.db3"
        sent = write_db3(recording, frames(), fx, fy, cx, cy, [0.0] * 5, FPS)
        calibration = tmp_path / "calibration.json"
        calibration.write_text(json.dumps({"base_T_camera": camera.ravel().tolist()}))

        graph = yaml.safe_load((ROOT / "dataflows" / "franka.yml").read_text())
        for node in graph["nodes"]:
            env = node.setdefault("env", {})
            if node["id"] == "camera":
                env.update(PLAYBACK_FILE=str(recording), EXTRINSICS_FILE=str(calibration))
            if node["id"] == "robot":
                env.update(FRANKA_IP="127.0.0.1", CONNECT_TIMEOUT_S=10)
            if node["id"] == "planner":
                env["PRESS_S"] = 2.5
            if node["id"] == "session":
                env.update(RECORDINGS_DIR=str(tmp_path), SESSION="franka", TIMEOUT_S=60)
            if node["id"] == "console":  # no person at a page: one step of its own
                env.update(SERVE=False, DEADMAN=False,
                           INSTRUCTION="press Zusanli with moderate pressure")
        proc = dora_run(graph, tmp_path / "franka.yml", "120s")
    log = proc.stdout + proc.stderr
    camera = [line for line in log.splitlines() if "realsense: sent " in line]
    assert camera, log[-3000:]  # the camera closed with the session, frames all in order
    assert 0 < int(camera[0].split("sent ")[1].split()[0]) <= sent
    assert "grounding: ST36 (Zusanli)" in log, log[-3000:]
    assert "phase press" in log, log[-3000:]
    summary = json.loads((tmp_path / "franka" / "summary.json").read_text())
    # no ground truth on a live graph: the force and the contact are what is judged
    assert summary["ok"], summary["problems"]
    assert summary["force_target_n"] == 6.0 and summary["force_rms_error_n"] <= 1.5
    assert summary["max_force_n"] <= 15.0 and summary["contact_s"] >= 2.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
def test_distributed_graph_runs_the_sim_session_across_two_daemons(tmp_path):
    """A coordinator and two daemons (`gpu`, `robot`) on loopback, as on two machines."""
    import time

    graph = yaml.safe_load((ROOT / "dataflows" / "distributed.yml").read_text())
    machines = {node["id"]: node["deploy"]["machine"] for node in graph["nodes"]}
    assert machines["grounding"] == machines["icp-tracker"] == machines["camera"] == "gpu"
    assert machines["force-controller"] == machines["robot"] == machines["planner"] == "robot"
    for node in graph["nodes"]:
        if node["id"] == "session":
            node["env"].update(RECORDINGS_DIR=str(tmp_path), SESSION="two", TIMEOUT_S=50)
        if node["id"] == "planner":
            node["env"]["PRESS_S"] = 2.5
    path = tmp_path / "distributed.yml"
    path.write_text(yaml.safe_dump(graph))
    bin_dir = Path(sys.executable).parent
    coordinator, zenoh = free_port(), free_port()
    # each daemon runs its nodes in a folder of its own: the graph's paths resolve against
    # TUINA_ROOT, as on two machines with their own checkouts
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               TUINA_ROOT=str(ROOT / "dataflows"), DORA_COORDINATOR_PORT=str(coordinator))
    dora = str(bin_dir / "dora")
    procs = [subprocess.Popen([dora, "coordinator", "--port", str(coordinator), "--quiet"],
                              env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        time.sleep(1.0)
        for machine in ("gpu", "robot"):
            (tmp_path / machine).mkdir()
            procs.append(subprocess.Popen(
                [dora, "daemon", "--machine-id", machine, "--local-listen-port",
                 str(free_port()), "--zenoh-peer", f"tcp/127.0.0.1:{zenoh}"],
                env=env, cwd=tmp_path / machine, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        time.sleep(3.0)
        proc = subprocess.run([dora, "start", str(path), "--attach", "--name", "two"], env=env,
                              capture_output=True, text=True, timeout=240)
    finally:
        for p in procs:
            p.kill()
    log = proc.stdout + proc.stderr
    assert "on daemon `gpu`" in log and "on daemon `robot`" in log, log[-3000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    # the same bounds as the single-machine session
    assert summary["ok"], summary["problems"]
    # the sim graph's press: 1.2-4.4 mm over seven sessions with the realistic sensors and the
    # body off its expected pose (tests/test_e2e.py says why), 4.2 mm here once
    assert summary["acupoint_error_mm"] <= 5.0
    # as the sim graph's press: 2.1-5.2 deg over seven sessions, 7.07 here once
    assert summary["normal_error_deg"] <= 8.0
    assert summary["force_rms_error_n"] <= 1.5
    assert summary["max_force_n"] <= 15.0
    assert summary["contact_s"] >= 2.0


def test_the_baxter_swap_is_a_change_of_yaml():
    """baxter-sim.yml is baxter.yml with the RealSense replaced by the sim world's camera and
    the robot's address pointed at the world's simulated arm: every other node is the same."""
    live = {n["id"]: n for n in yaml.safe_load((ROOT / "dataflows" / "baxter.yml").read_text())
            ["nodes"]}
    sim = {n["id"]: n for n in yaml.safe_load((ROOT / "dataflows" / "baxter-sim.yml")
                                              .read_text())["nodes"]}
    assert set(sim) - set(live) == {"world"} and set(live) <= set(sim)
    assert live["robot"]["path"] == sim["robot"]["path"] == "tuina-baxter"
    for node_id, node in live.items():
        if node_id == "camera":
            continue
        env_live, env_sim = dict(node.get("env") or {}), dict(sim[node_id].get("env") or {})
        if node_id == "robot":
            for key in ("ROSBRIDGE_HOST", "CONNECT_TIMEOUT_S"):
                env_live.pop(key), env_sim.pop(key)
        if node_id == "console":  # live: a person at the page; sim: one step of its own
            assert env_live.pop("SERVE") is True and env_live.pop("DEADMAN") is True
            assert env_sim.pop("INSTRUCTION") and env_sim.pop("AT_S") >= 0
        assert env_live == env_sim, node_id
        inputs = dict(sim[node_id].get("inputs") or {})
        if node_id == "session":
            inputs.pop("ground_truth")  # scored against the simulated truth
        assert inputs == (node.get("inputs") or {}), node_id


@pytest.mark.e2e
def test_baxter_sim_graph_runs_the_session_on_a_simulated_baxter_through_rosbridge(tmp_path):
    from .test_e2e import dora_run

    graph = yaml.safe_load((ROOT / "dataflows" / "baxter-sim.yml").read_text())
    port = free_port()
    for node in graph["nodes"]:
        env = node.setdefault("env", {})
        if node["id"] in ("world", "robot"):
            env["ROSBRIDGE_PORT"] = port
        if node["id"] == "session":
            env.update(RECORDINGS_DIR=str(tmp_path), SESSION="baxter", TIMEOUT_S=60)
        if node["id"] == "planner":
            env["PRESS_S"] = 2.5
    proc = dora_run(graph, tmp_path / "baxter-sim.yml", "150s")
    log = proc.stdout + proc.stderr
    summary_file = tmp_path / "baxter" / "summary.json"
    assert summary_file.exists(), log[-3000:]
    summary = json.loads(summary_file.read_text())
    assert summary["ok"], summary["problems"]
    assert "phase press" in log, log[-3000:]
    assert "tuina-baxter: " not in log, log[-3000:]  # the robot node reported no problem
    assert summary["acupoint_error_mm"] <= 5.0  # the ball's indentation included
    # the same camera and pose-fit as the FR3's press (2.1-5.2 deg over seven sessions on
    # the D455's correlated noise, 7.07 on the distributed graph); 5.05 deg here once
    assert summary["normal_error_deg"] <= 8.0
    assert summary["force_target_n"] == 6.0 and summary["force_rms_error_n"] <= 1.5
    assert summary["max_force_n"] <= 15.0 and summary["contact_s"] >= 2.0
    # the loop's rate is the machine's (a loaded one gave 89.8 Hz): `make bench` measures it;
    # what the code guarantees is a contact held without a break while commands come
    assert summary["contact_breaks"] == 0 and summary["sim_clock_command_hz"] > 0
