"""The whole simulated session under dora: world, seven nodes, franky against franky-sim."""

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tuina.evaluation.sessions import relocated

from .bounded import run_bounded

ROOT = Path(__file__).resolve().parents[1]


def dora_run(graph: dict, path: Path, stop_after: str) -> subprocess.CompletedProcess:
    """Write ``graph`` (read from dataflows/) to ``path`` and ``dora run`` it with this
    environment's nodes; its relative paths keep meaning what they meant in dataflows/."""
    path.write_text(yaml.safe_dump(relocated(graph, ROOT / "dataflows" / path.name)))
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return run_bounded([bin_dir / "dora", "run", path, "--stop-after", stop_after], 240, env=env)


def strict_json(token: str) -> None:
    raise AssertionError(f"{token} is not JSON; a figure not measured is null")


def run_sim(tmp_path: Path, console_env: dict, viewer: bool = False
            ) -> tuple[subprocess.CompletedProcess, dict]:
    """``tuina run`` the sim graph with the console's env changed (and a viewer node saving
    ``session.rrd``); its summary."""
    graph = yaml.safe_load((ROOT / "dataflows" / "sim.yml").read_text())
    if viewer:
        from tuina.run import with_viewer

        graph = with_viewer(graph, "save", tmp_path / "session.rrd")
    for node in graph["nodes"]:
        if node["id"] == "console":
            node["env"].update(console_env)
        if node["id"] == "grounding" and console_env.get("INSTRUCTION"):
            from tuina.operators.instructions import parse_instruction

            node["env"]["BODY_POSTURE"] = parse_instruction(
                console_env["INSTRUCTION"]).acupoint.posture
        if node["id"] == "session":
            node["env"].update(RECORDINGS_DIR=str(tmp_path), SESSION="e2e", TIMEOUT_S=50)
        if node["id"] == "planner":
            node["env"]["PRESS_S"] = 2.5
    (tmp_path / "sim.yml").write_text(yaml.safe_dump(relocated(graph, ROOT / "dataflows" /
                                                               "sim.yml")))
    proc = run_bounded([Path(sys.executable).parent / "tuina", "run", tmp_path / "sim.yml",
                        "--stop-after", "240s"], 300)
    summary_file = tmp_path / "e2e" / "summary.json"
    assert summary_file.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(summary_file.read_text(), parse_constant=strict_json)
    # a quiet terminal: the nodes' own lines and the summary once; dora's log in the session
    terminal = proc.stdout.splitlines()
    assert len(terminal) < 60, proc.stdout  # 48 lines for the three-step routine
    assert sum(line.endswith("session: session summary") for line in terminal) == 1
    assert not [line for line in terminal if "WARN" in line or "Traceback" in line]
    dora_log = (tmp_path / "e2e" / "dora.log").read_text()
    assert "session summary" in dora_log and "DEBUG" in dora_log
    return proc, summary


def assert_gentle_press(step: dict, code: str, force_n: float, max_error_mm: float) -> None:
    """One step's figures: the acupoint reached, the normal, a gentle force held."""
    assert step["ok"], step
    assert step["target"] == code
    assert step["acupoint_error_mm"] <= max_error_mm
    # 2.1-5.2 deg over seven sessions on the D455's correlated noise (up to 3.2 before it);
    # 5.05 (the Baxter graph) and 7.07 deg (the distributed graph) since, same camera model
    assert step["normal_error_deg"] <= 8.0
    assert step["force_target_n"] == force_n
    assert step["force_rms_error_n"] <= 1.5
    assert step["max_force_n"] <= 15.0
    assert step["contact_s"] >= 2.0


@pytest.mark.e2e
def test_sim_routine_runs_three_steps_and_ends_by_itself(tmp_path):
    """The graph's own routine (make run): press ST25, knead CV6, stroke from ST36, one after
    the other; each step scored on its own and the session ok only when every step is."""
    proc, summary = run_sim(tmp_path, {})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert summary["ok"], summary["problems"]
    steps = summary["steps"]
    assert [s["instruction"] for s in steps] == ["press Tianshu with moderate pressure for 5 s",
                                                  "knead Qihai with moderate pressure",
                                                  "stroke Zusanli with moderate pressure"]
    # ST36, pressed before its stroke: with an ideal camera, 12 presses gave 1.73-3.08 mm;
    # with the D455's bias, the intrinsics' error and the body 34 mm / 7 deg off its
    # expected pose, seven gave 1.2-4.4 mm (the calibration alone leaves 1.5 mm at the
    # body): 5 mm bounds what a realistic rig holds
    assert_gentle_press(steps[2], "ST36", 6.0, 5.0)
    # the stroke's path against the tool's true contact: as `tuina eval force` bounds it
    assert steps[2]["stroke_tracking_mm"] <= 4.0
    assert steps[0]["stroke_tracking_mm"] is None  # a press has no stroke: null, not NaN
    # ST25 and CV6 are held to the session's own bounds (10 mm, 10 deg, 1.5 N): pressing
    # ST25 gave 1.3-2.3 mm / 0.4-4.2 deg / 0.22-0.30 N in three runs, kneading CV6 at 6 N
    # 3.5-5.0 mm / 0.54-1.08 N in four (at 4 N: 1.02-1.38 N in four, too near the bound
    # to run unattended): too few runs to set tighter bounds on
    for step, code in ((steps[0], "ST25"), (steps[1], "CV6")):
        assert step["ok"] and step["target"] == code, step
        assert step["force_target_n"] == 6.0 and step["contact_s"] >= 2.0
    # the routine's duration_s: ST25 held 5 s at the force, 5.17 s of contact in the run that
    # measured it; the graph's PRESS_S of 3 s gave CV6 2.71 s in the same run
    assert steps[0]["contact_s"] >= 4.5
    assert sum(s["duration_s"] for s in steps) == pytest.approx(summary["duration_s"])


@pytest.mark.e2e
def test_sim_session_presses_the_prone_body(tmp_path):
    """The body prone, a Back-Shu point on the lower back (one step): 1.3 mm in the run that
    measured it."""
    proc, summary = run_sim(tmp_path, {"INSTRUCTION": "press Shenshu firmly", "ROUTINE": ""},
                            viewer=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(summary["steps"]) == 1
    assert_gentle_press(summary, "BL23-R", 9.0, 5.0)
    assert summary["first_contact_s"] <= 30.0
    # the viewer node beside it: its .rrd, read with rerun's reader, holds the session's views
    from .test_export import rrd_rows

    rows = rrd_rows(tmp_path / "session.rrd")
    seconds = summary["duration_s"]
    for entity, least in (("/world/arm", 10 * seconds), ("/world/tool", 10 * seconds),
                          ("/world/body", seconds / 2), ("/world/camera/rgb", 2 * seconds),
                          ("/force/measured", 50 * seconds), ("/force/true", 5 * seconds)):
        assert rows.get(entity, 0) >= least, (entity, rows)  # a third of its rate or more
    for entity in ("/world/plan", "/world/targets", "/world/tool_path", "/log/phase"):
        assert rows.get(entity, 0) >= 1, (entity, rows)


def eval_json(*args: str, timeout: int) -> dict:
    """``tuina eval ... --json``: it must exit 0 and print one JSON object."""
    exe = Path(sys.executable).parent / "tuina"
    proc = run_bounded([exe, "eval", *args, "--json"], timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(proc.stderr[-8000:])  # the evaluation's log, shown when an assertion on it fails
    return json.loads(proc.stdout)


@pytest.mark.e2e
def test_eval_perception_meets_the_accuracy_table():
    result = eval_json("perception", "--trials", "2", "--seeds", "1", timeout=600)
    assert result["seeds"] == 1 and result["spread"]["near_mm"]["n"] == 1
    # with the D455's correlated noise and depth bias, the reported intrinsics' and the
    # marker mount's errors and clicks 1 px (sigma) off, seed 0 over 3 trials gave clicks of
    # 2.2 / 5.1 / 7.7 mm near / middle / far (VBRM's own on a real rig: 2.20 / 4.54 / 6.29)
    # and atlas 1.6 / 2.8 / 5.7 mm: bounded at VBRM's figures plus 30 %
    for group, vbrm_mm in (("near", 2.20), ("middle", 4.54), ("far", 6.29)):
        assert result[f"{group}_mm"] <= 1.3 * vbrm_mm, result
        assert result[f"atlas_{group}_mm"] <= 1.3 * vbrm_mm, result
    assert result["near_distance_m"][-1] < result["far_distance_m"][0]
    assert result["overall_mean_mm"] <= 1.3 * 4.3 and result["overall_std_mm"] > 0
    assert result["normal_deg"] <= 6.0  # 4.85 deg measured
    # the camera pose absorbs part of the intrinsics' error: 1.9 mm, 0.15 deg measured
    assert result["calibration_mm"] <= 3.0 and result["calibration_deg"] <= 0.3
    assert len(result["targets"]) == 9


@pytest.mark.e2e
def test_eval_perception_on_the_prone_body():
    result = eval_json("perception", "--posture", "prone", "--trials", "2", "--seeds", "1",
                       timeout=600)
    assert result["posture"] == "prone" and result["per_seed"][0]["posture"] == "prone"
    assert {t["code"] for t in result["targets"]} >= {"BL23", "BL25-R", "BL57"}
    # seed 0 over 3 trials: clicks 1.9 / 3.0 / 7.4 mm near / middle / far (0.66-0.70,
    # 0.71-0.75, 1.28-1.45 m), atlas 1.5 / 1.7 / 3.6 mm: bounded as the supine table is
    for group, vbrm_mm in (("near", 2.20), ("middle", 4.54), ("far", 6.29)):
        assert result[f"{group}_mm"] <= 1.3 * vbrm_mm, result
        assert result[f"atlas_{group}_mm"] <= 1.3 * vbrm_mm, result
    assert result["normal_deg"] <= 6.0  # 2.07 deg measured


@pytest.mark.e2e
def test_eval_coverage_on_a_person_presses_the_point_it_asks_for():
    """A person on the table (person 0, 1.84 m), the grounding fitting a human body model to
    the depth: "press Zusanli on the right" is grounded, pressed and scored on the world's
    label. Ten runs (2026-12-07): 3.6-6.6 mm from the label (mean 5.2, sd 1.1), 1.2-8.2 deg off
    its normal (mean 4.5, sd 2.0), the force 0.07-0.23 N off its target (mean 0.12): bounded at
    the worst plus about two standard deviations; 5 mm, the issue's aim, is not yet held."""
    result = eval_json("coverage", "--body", "person", "--point", "ST36-R", "--seeds", "1",
                       timeout=600)
    assert result["body"] == "person"
    (row,) = result["rows"]
    assert row["outcome"] == "pressed" and row["grounded"] == "ST36-R" and row["ok"], row
    assert row["acupoint_error_mm"] <= 9.0, row
    assert row["normal_error_deg"] <= 12.0, row
    assert row["force_error_n"] <= 0.5, row


@pytest.mark.e2e
def test_eval_registration_finds_or_refuses_a_body_off_its_expected_pose():
    # the full figure is 20 placements (docs/grounding.md); a single ICP from the expected
    # pose put 3 of 8 of these more than 10 mm off
    result = eval_json("registration", "--placements", "4", timeout=600)
    assert result["placements"] == 4 and result["points"] >= 15
    assert result["rate_wrong"] == 0 and result["rate_imprecise"] == 0, result
    assert result["rate_found"] >= 0.75, result
    assert result["error_mm_max"] <= 3.0, result


@pytest.mark.e2e
def test_eval_tracking_registers_the_prone_body_as_well():
    # odd seeds lie the body prone, the arm on BL23-R (Shenshu) in the frames it renders;
    # seed 1 gave 0.27-0.42 mm mean per scenario, 0.87 mm at worst
    result = eval_json("tracking", "--graph", str(ROOT / "dataflows" / "sim.yml"), "--seeds",
                       "2", "--frames-only", timeout=600)
    prone = result["per_seed"][1]
    assert (prone["posture"], prone["target"]) == ("prone", "BL23-R")
    assert result["per_seed"][0]["posture"] == "supine"
    assert prone["translation_err_mm"] <= 0.5 and prone["rotation_err_deg"] <= 0.2
    assert prone["translation_err_max_mm"] <= 1.5 and prone["published_err_max_mm"] <= 1.5
    assert prone["jerk_detected"]


@pytest.mark.e2e
def test_eval_tracking_follows_the_moving_body():
    # every scenario's frames; the closed loop on the largest shift and the jerk (`tuina eval
    # tracking` runs all six sessions a seed: the bounds below are on the worst of them)
    result = eval_json("tracking", "--graph", str(ROOT / "dataflows" / "sim.yml"), "--seeds",
                       "1", "--closed-loop", "shift 20 mm", "--closed-loop", "jerk 15 mm",
                       timeout=1500)
    assert result["seeds"] == 1 and result["spread"]["follow_err_mm"]["n"] == 1
    sessions = {name for name, row in result["scenarios"].items() if "session" in row}
    assert sessions == {"shift 20 mm", "jerk 15 mm"}
    # registration on 30 Hz frames with the arm in view
    assert result["translation_err_mm"] <= 0.5 and result["rotation_err_deg"] <= 0.2
    # the worst frame: 1.11 mm on the D455's correlated noise and bias (0.7 mm before them)
    assert result["translation_err_max_mm"] <= 1.5
    # what the controller follows, every frame: in these slow motions no frame is lost, so
    # the published motion is as good as the registration
    assert result["published_err_max_mm"] <= 1.5
    assert result["registration_ms_median"] <= 20.0
    assert result["update_hz"] >= 25.0
    assert result["inlier_rmse_m"] < 0.006
    assert result["jerk_detected"]
    # the closed loop: on the acupoint while the body moves, contact held, nothing excessive.
    # What following adds: the drift of the tool's offset from the acupoint in the body's
    # frame, worst scenario mean 1.77 and 1.30 mm over two runs. Its largest single sample
    # (3.65 and 5.00 mm) is a tail of thousands of samples and is reported, not bounded
    assert result["follow_drift_mm"] <= 2.5
    # The follow error holds the acupoint's perception error as well (1.2-4.4 mm over seven
    # press sessions, the calibration's 1.5 mm at the body among it): worst scenario mean
    # 3.35, 3.96 and 3.08 mm and p95 4.41-4.43 mm over three runs of seed 0 (the sessions
    # run on wall-clock time, so one seed gives different frames to ground on)
    assert result["follow_err_mm"] <= 5.0 and result["follow_err_p95_mm"] <= 6.0
    assert result["contact_breaks"] == 0
    failed = {name: {key: row["session"].get(key) for key in (
        "problems", "faults", "max_force_n", "follow_err_max_mm", "aborts")}
        for name, row in result["scenarios"].items() if name in sessions - {"jerk 15 mm"}
        and not (row["session"]["ok"] and row["session"]["max_force_n"] <= 15.0)}
    assert not failed, failed
    # a 15 mm jerk in 0.1 s: backed off, found again and pressed again; or, where the body's
    # push reached the tool first, released by the robot, on the force cap (15.3 N, once in
    # three runs: the cap is where the release starts, not a ceiling a body this fast can be
    # held under) or on the controller's force-jump fault (8.3 -> 11.3 N in one period, once
    # in four runs)
    jerk = result["scenarios"]["jerk 15 mm"]["session"]
    assert len(jerk["aborts"]) >= 1
    if jerk["ok"]:
        assert jerk["regrounds"] >= 1
    else:  # released and held: no second press to find the point again for
        assert set(jerk["faults"]) <= {"force_cap", "error_event"}, jerk["problems"]
        relayed = [p for p in jerk["problems"] if "[error_event]" in p]
        assert all("force reading jumped" in p or "body pushed" in p for p in relayed), relayed
        assert any("releasing contact" in p for p in jerk["problems"]), jerk["problems"]


@pytest.mark.e2e
def test_eval_force_holds_a_gentle_steady_contact():
    # one seed here; `tuina eval force` runs three (docs/force-control.md)
    result = eval_json("force", "--graph", str(ROOT / "dataflows" / "sim.yml"), "--seeds", "1",
                       timeout=900)
    assert result["seeds"] == 1 and result["spread"]["rms_error_n"]["n"] == 1
    # scored on the world's true force, the arm's estimate biased, noisy and 10 ms late.
    # Over three seeds: settled press 0.08-0.50 N (mean 0.23; the target 0.3), stroke
    # 0.40-0.43 N (target 0.5), moving body 0.64-0.85 N (the target 0.5 is not reached: the
    # tracker's motion, noisier on correlated depth, moves the reference). The overshoot at
    # first contact was 0.15-2.8 N over nine sessions, then 4.5 N on the moving body's first
    # touch (one of four sessions of seed 0): the 10 ms late, biased estimate lets the first
    # touch through before the loop sees it (0.15 N with an ideal sensor); it stays well
    # under the 15 N cap, which is what is bounded here besides the stated range
    assert result["sessions_ok"]
    assert result["rms_error_n"] <= 0.6 and result["overshoot_n"] <= 6.0
    assert result["max_force_n"] <= 15.0
    # the stroke's contact point off its planned path: 1.16-2.74 mm on seed 0 over two runs
    # (the path is planned on the grounded acupoint, with its perception error)
    assert result["stroke_rms_error_n"] <= 0.6 and result["stroke_tracking_mm"] <= 4.0
    assert result["moving_rms_error_n"] <= 1.0
    # prone, on the lower back (BL23): the same bound as the press on the shin
    assert result["scenarios"]["prone press"]["target"] in ("BL23", "BL23-R")
    assert result["prone_rms_error_n"] <= 0.6
    # the loop in wall time is measured and reported (its rate is the machine's: `make bench`)
    assert result["control_hz"] > 0 and np.isfinite(result["period_jitter_p99_ms"])
    assert np.isfinite(result["command_jitter_p99_ms"]) and np.isfinite(result["latency_p99_ms"])


def start_session(tmp_path: Path, name: str, overrides: dict) -> tuple[subprocess.Popen, list]:
    """``dora run`` the sim graph with ``overrides`` in the background; its output lines are
    collected as they come."""
    from tuina.evaluation.sessions import session_graph

    path = session_graph(ROOT / "dataflows" / "sim.yml", overrides, tmp_path, name)
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen([str(bin_dir / "dora"), "run", str(path), "--stop-after", "150s"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return proc, lines


def wait_for(lines: list, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(text in line for line in list(lines)):
        assert time.monotonic() < deadline, f"no '{text}' within {timeout_s} s: {lines[-20:]}"
        time.sleep(0.2)


@pytest.mark.e2e
def test_the_operators_estop_stops_the_robot_with_one_line(tmp_path):
    proc, lines = start_session(tmp_path, "estop", {"planner": {"PRESS_S": 10.0},
                                                    "session": {"TIMEOUT_S": 60}})
    try:
        # at the first touch: the e-stop's path is the same in any phase, and waiting longer
        # only widens the window for a stall of the loaded machine to end the press first
        # (a tracker silent for 0.5 s of robot time backs the tool off, as it must)
        wait_for(lines, "phase contact", 120)
        pressed = subprocess.run([str(Path(sys.executable).parent / "tuina"), "estop",
                                  "--reason", "test button"], capture_output=True, text=True,
                                 timeout=30)
        assert pressed.returncode == 0, pressed.stderr
        proc.wait(timeout=60)
    finally:
        proc.kill()
    said = [line for line in lines if "tuina-franka: e-stop" in line]
    assert len(said) == 1 and "e-stop from estop-button: test button" in said[0], said
    summary = json.loads((tmp_path / "estop" / "summary.json").read_text())
    assert not summary["ok"] and any("e-stop" in p for p in summary["problems"])
    assert summary["max_force_n"] <= 15.0


@pytest.mark.e2e
def test_a_silent_robot_link_is_reported_and_stops_the_robot_node(tmp_path):
    proc, lines = start_session(tmp_path, "link", {"world": {"ROBOT_LINK_DROP_S": 15.0},
                                                   "planner": {"PRESS_S": 10.0},
                                                   "session": {"TIMEOUT_S": 60}})
    try:
        proc.wait(timeout=200)
    finally:
        proc.kill()
    said = [line for line in lines if "tuina-franka: lost the robot connection" in line]
    assert len(said) == 1 and "its clock stopped" in said[0], lines[-30:]
    stopped_after = float(said[0].split("stopped ")[1].split(" s ago")[0])
    assert stopped_after <= 1.0
    summary = json.loads((tmp_path / "link" / "summary.json").read_text())
    assert not summary["ok"] and any("lost the robot" in p for p in summary["problems"])


def test_estop_without_a_running_graph_is_one_line():
    proc = subprocess.run([str(Path(sys.executable).parent / "tuina"), "estop"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    line = proc.stderr.strip()
    assert "\n" not in line and "estop-button" in line and "hardware e-stop" in line


TUINA = Path(sys.executable).parent / "tuina"
ALL_BUT_CONTROLLER = "world,camera,console,grounding,pose-fit,icp-tracker,planner,robot,session"


def first_difference(what: str, run, recorded) -> str:
    """Where two recordings of one topic part (empty when they agree): the first differing
    message's index, stamps and inputs, and how many differ, so a failure names its cause."""
    rows = min(run.height, recorded.height)
    if run.height != recorded.height:
        return f"{what}: {run.height} vs {recorded.height} messages"
    for column in ("payload", "stamp_ns"):
        a, b = run[column].to_list(), recorded[column].to_list()
        differ = [i for i in range(rows) if a[i] != b[i]]
        if differ:
            i = differ[0]
            inputs = [json.loads(frame["metadata"][i]).get("inputs") for frame in (run, recorded)]
            return (f"{what}: {len(differ)} of {rows} messages differ in {column}, first #{i} "
                    f"(stamps {run['stamp_ns'][i]} / {recorded['stamp_ns'][i]}, inputs "
                    f"{inputs[0]} / {inputs[1]})")
    return ""


@pytest.fixture(scope="module")
def recorded_session(tmp_path_factory) -> Path:
    """One sim session recorded with `tuina record` (every output)."""
    folder = tmp_path_factory.mktemp("recording") / "rec"
    graph = yaml.safe_load((ROOT / "dataflows" / "sim.yml").read_text())
    for node in graph["nodes"]:  # one step, not the graph's routine
        if node["id"] == "console":
            node["env"].update(INSTRUCTION="press Zusanli with moderate pressure", ROUTINE="")
    path = folder.parent / "sim.yml"
    path.write_text(yaml.safe_dump(relocated(graph, ROOT / "dataflows" / "sim.yml")))
    proc = run_bounded([TUINA, "record", path, "-o", folder,
                        "--stop-after", "150s"], 300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # a quiet terminal, as tuina run's: the nodes' lines, dora's own log in the recording
    terminal = proc.stdout.splitlines()
    assert len(terminal) < 60 and not [line for line in terminal if "DEBUG" in line], terminal
    assert "DEBUG" in (folder / "dora.log").read_text()
    return folder


@pytest.mark.e2e
def test_record_keeps_every_message_of_a_sim_session(recorded_session):
    import polars as pl

    from tuina.recording import read_manifest

    folder = recorded_session
    manifest = read_manifest(folder)
    assert manifest["complete"] and "nodes:" in manifest["graph"]
    topics = manifest["topics"]
    for topic in ("world/rgb", "world/depth", "camera/depth", "robot/robot_state",
                  "force-controller/command", "icp-tracker/body_motion", "session/events"):
        assert topics[topic]["count"] > 0 and topics[topic]["lost"] == 0, (topic, topics)
    assert sum(t["lost"] for t in topics.values()) == 0
    states = pl.read_ipc(folder / "robot__robot_state.arrow")
    assert states.height == topics["robot/robot_state"]["count"] > 1000
    assert states["seq"].to_list() == list(range(states.height))
    assert not list(folder.glob("*.arrows"))  # every stream became a file
    summary = json.loads((folder / "summary.json").read_text())  # the session's, kept with it
    assert summary["ok"] and summary["force_source"] == "truth", summary["problems"]


@pytest.mark.e2e
def test_the_sim_recording_exports_to_mcap_topic_for_topic(recorded_session, tmp_path):
    """Every recorded topic a channel of the MCAP file, with the recording's message count
    and first and last event times; the export's own line says how long it took."""
    from mcap.reader import make_reader

    from tuina.recording import read_manifest, read_topic

    out = tmp_path / "session.mcap"
    proc = run_bounded([TUINA, "export", recorded_session, "--mcap", out], 300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"export: .*session\.mcap \(\d+ messages of a [0-9.]+ s session, "
                     r"[0-9.]+ MB\) in [0-9.]+ s", proc.stdout), proc.stdout
    times: dict[str, list[int]] = {}
    with out.open("rb") as f:
        for _, channel, message in make_reader(f).iter_messages():
            span = times.setdefault(channel.topic, [message.log_time, message.log_time, 0])
            span[0], span[1] = min(span[0], message.log_time), max(span[1], message.log_time)
            span[2] += 1
    recorded = {t: v for t, v in read_manifest(recorded_session)["topics"].items()
                if v["count"] > 0}
    assert len(recorded) >= 15
    for topic, entry in recorded.items():
        stamps = read_topic(recorded_session, topic).column("stamp_ns").to_numpy()
        assert times["/" + topic] == [stamps.min(), stamps.max(), entry["count"]], topic


@pytest.mark.e2e
def test_replay_at_full_speed_repeats_every_node_bit_for_bit(recorded_session, tmp_path):
    """World, camera and robot from the recording; every other node live, its inputs held to
    the recorded order: each node's outputs are those it recorded, on two replays."""
    import polars as pl

    from tuina.recording import read_manifest

    runs = []
    for k in range(2):
        out = tmp_path / f"replay-{k}"
        proc = run_bounded([TUINA, "replay", recorded_session, "--speed", "0", "-o", out], 300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "replay: no " not in proc.stderr  # no node waited in vain for a message
        runs.append(out)
    replaced = {"world", "camera", "robot", "console"}
    topics = [t for t, v in read_manifest(recorded_session)["topics"].items()
              if v["count"] > 0 and t.split("/")[0] not in replaced]
    assert {"force-controller/command", "icp-tracker/body_motion", "planner/trajectory",
            "grounding/targets", "pose-fit/target_pose"} <= set(topics)
    differences = []
    for topic in topics:
        name = topic.replace("/", "__") + ".arrow"
        recorded = pl.read_ipc(recorded_session / name)
        first, second = (pl.read_ipc(run / name) for run in runs)
        differences.append(first_difference(f"{topic}: replay 2 vs 1", second, first))
        # the recording may stop a few messages early; what it has is repeated exactly
        assert first.height >= recorded.height, topic
        differences.append(first_difference(f"{topic}: replay vs recording",
                                            first.head(recorded.height), recorded))
    assert not [d for d in differences if d], [d for d in differences if d]
    commands = pl.read_ipc(runs[0] / "force-controller__command.arrow")
    states = pl.read_ipc(recorded_session / "robot__robot_state.arrow")
    assert commands.height >= 1000 and states.height >= 1000  # through a multi-input node


@pytest.mark.e2e
def test_replay_of_the_controller_alone_reproduces_it_bit_for_bit(recorded_session, tmp_path):
    import polars as pl

    out = tmp_path / "replay"
    proc = run_bounded([TUINA, "replay", recorded_session, "--replace", ALL_BUT_CONTROLLER,
                        "--speed", "0", "-o", out], 300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = pl.read_ipc(out / "force-controller__command.arrow")
    recorded = pl.read_ipc(recorded_session / "force-controller__command.arrow")
    assert run.height == recorded.height >= 1000  # three recorded inputs, one node
    difference = first_difference("force-controller/command", run, recorded)
    assert not difference, difference


@pytest.mark.e2e
def test_faults_mid_press_release_contact_and_are_named():
    """Fault injection (tuina eval safety) on the true contact force: the controller killed,
    the wrench NaN, the body jerking toward the tool."""
    scenarios = ["kill force-controller", "wrench NaN", "body jerk 5 cm toward the tool"]
    args = [arg for name in scenarios for arg in ("--scenario", name)]
    result = eval_json("safety", "--graph", str(ROOT / "dataflows" / "sim.yml"), *args,
                       "--seeds", "1", timeout=900)
    assert result["seeds"] == 1
    rows = {row["scenario"]: row for row in result["scenarios"]}
    assert set(rows) == set(scenarios)
    for name, row in rows.items():
        assert row["before_fault_n"] > 3.0, (name, row)  # the fault came mid-press
        assert row["faults"] and row["ok"] is False, (name, row)
        assert np.isfinite(row["release_s"]), (name, row)  # never left pressed
    for name in ("kill force-controller", "wrench NaN"):
        row = rows[name]
        assert row["peak_after_n"] <= 15.0, (name, row)
        assert row["release_s"] <= 0.5, (name, row)
        assert row["hold_motion_mm"] < 1.0, (name, row)
    # the killed controller's input closes, or the 0.1 s watchdog fires first when dora takes
    # longer to see the process gone (once in many runs on a loaded machine): released either way
    assert rows["kill force-controller"]["faults"] in (["command_closed"], ["watchdog"])
    assert rows["wrench NaN"]["faults"] == ["wrench_invalid"]
    # a 5 cm flinch within 0.1 s throws the arm's inertia at the body: the peak is physics
    # (measured 60.5-61.6 N over 5 runs, 52 N earlier; 71 N before the escape speed), the
    # release is as quick as any other
    jerk = rows["body jerk 5 cm toward the tool"]
    assert jerk["release_s"] <= 0.5 and jerk["hold_motion_mm"] < 1.0, jerk
    assert jerk["peak_after_n"] < 65.0, jerk


@pytest.mark.e2e
def test_a_fault_pressing_the_prone_body_releases_contact():
    result = eval_json("safety", "--graph", str(ROOT / "dataflows" / "sim.yml"), "--scenario",
                       "kill force-controller", "--posture", "prone", "--seeds", "1",
                       timeout=600)
    (row,) = result["scenarios"]
    assert row["posture"] == "prone" and row["before_fault_n"] > 3.0, row
    assert row["faults"] in (["command_closed"], ["watchdog"]) and row["ok"] is False, row
    assert row["peak_after_n"] <= 15.0 and row["release_s"] <= 0.5, row
    assert row["hold_motion_mm"] < 1.0, row
