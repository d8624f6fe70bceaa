"""Recordings: Arrow IPC per topic, crash safety, truncation, the recorder node."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from tuina import recording
from tuina.messages import Header, RobotState, decode_depth, encode_depth
from tuina.recording import Recorder, RecordingError, read_manifest, read_topic

from .test_nodes import run_node


def state(k: int) -> RobotState:
    return RobotState([0.1 * k] * 7, [0.0] * 7, [0.4, 0.0, 0.2 + k * 1e-3], [1.0, 0, 0, 0],
                      [0.0, 0.0, -6.0, 0, 0, 0], "ok", [1.0] * 7)


def test_a_recording_round_trips_through_polars(tmp_path):
    rec = Recorder(tmp_path / "rec", {"graph": "nodes: []"})
    depth = np.full((48, 64), 0.8, np.float32)
    for k in range(50):
        rec.add("robot/robot_state", state(k).to_arrow(),
                {"stamp_ns": k * 10_000_000, "seq": k, "frame_id": "base"})
        payload, meta = encode_depth(depth + k * 1e-3, Header(k * 33_000_000, k, "cam"))
        rec.add("camera/depth", payload, meta)
    rec.close()
    manifest = read_manifest(tmp_path / "rec")
    assert manifest["complete"] and manifest["topics"]["robot/robot_state"]["count"] == 50
    assert manifest["topics"]["camera/depth"]["lost"] == 0
    frame = pl.read_ipc(tmp_path / "rec" / "robot__robot_state.arrow")
    assert frame.columns == ["seq", "stamp_ns", "recv_ns", "metadata", "payload"]
    assert frame["seq"].to_list() == list(range(50))
    assert frame["stamp_ns"][7] == 70_000_000
    table = read_topic(tmp_path / "rec", "robot/robot_state")
    again = RobotState.from_arrow(pa.array(table.column("payload")[12].values))
    assert again == state(12)
    depth_table = read_topic(tmp_path / "rec", "camera/depth")
    row = depth_table.slice(5, 1).to_pylist()[0]
    meta = {**__import__("json").loads(row["metadata"]), "stamp_ns": row["stamp_ns"]}
    image = decode_depth(pa.array(row["payload"], pa.uint16()), meta)
    np.testing.assert_allclose(image, depth + 5e-3, atol=1e-3)
    assert pl.scan_ipc(tmp_path / "rec" / "camera__depth.arrow").select(pl.len()).collect()[0, 0] \
        == 50


def test_gaps_in_a_senders_seq_are_counted_as_lost(tmp_path):
    rec = Recorder(tmp_path / "rec", {})
    for k in (0, 1, 2, 5, 6, 9):
        rec.add("robot/robot_state", state(k).to_arrow(),
                {"stamp_ns": k, "seq": k, "frame_id": "base"})
    rec.close()
    assert read_manifest(tmp_path / "rec")["topics"]["robot/robot_state"]["lost"] == 4


def test_a_recorder_killed_with_sigkill_keeps_everything_flushed(tmp_path):
    script = textwrap.dedent(f"""
        import time
        from tuina.messages import RobotState
        from tuina.recording import Recorder
        def state(k):
            return RobotState([0.1 * k] * 7, [0.0] * 7, [0.4, 0.0, 0.2], [1.0, 0, 0, 0],
                              [0.0] * 6, "ok", [1.0] * 7)
        rec = Recorder(__import__("pathlib").Path({str(tmp_path / "rec")!r}), {{}})
        for k in range(200):
            rec.add("robot/robot_state", state(k).to_arrow(),
                    {{"stamp_ns": k, "seq": k, "frame_id": "base"}})
        rec.flush()
        for k in range(200, 230):  # not flushed yet
            rec.add("robot/robot_state", state(k).to_arrow(),
                    {{"stamp_ns": k, "seq": k, "frame_id": "base"}})
        print("flushed", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "flushed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    manifest = read_manifest(tmp_path / "rec")
    assert manifest["complete"] is False
    assert manifest["topics"]["robot/robot_state"]["count"] == 200
    table = read_topic(tmp_path / "rec", "robot/robot_state")
    assert table.column("seq").to_pylist() == list(range(200))
    # the unfinished file holds an IPC stream after its 8-byte magic
    raw = (tmp_path / "rec" / "robot__robot_state.arrows").read_bytes()
    assert raw[:6] == b"ARROW1"
    assert pa.ipc.open_stream(raw[8:]).read_all().num_rows == 200


def test_a_truncated_stream_names_the_file_and_the_last_good_message(tmp_path):
    rec = Recorder(tmp_path / "rec", {})
    for k in range(30):
        rec.add("robot/robot_state", state(k).to_arrow(),
                {"stamp_ns": k, "seq": k, "frame_id": "base"})
        if k in (9, 19):
            rec.flush()
    rec.flush()
    stream = tmp_path / "rec" / "robot__robot_state.arrows"
    data = stream.read_bytes()
    stream.write_bytes(data[:-200])  # the last batch cut short
    with pytest.raises(RecordingError, match=r"robot__robot_state.arrows: cut short or corrupt "
                                             r"after seq 19"):
        read_topic(tmp_path / "rec", "robot/robot_state")
    kept = read_topic(tmp_path / "rec", "robot/robot_state", partial=True)
    assert kept.column("seq").to_pylist() == list(range(20))


def test_the_recorder_node_marks_a_failed_write_and_stops_the_robot(monkeypatch, tmp_path):
    from tuina.nodes import recorder

    folder = tmp_path / "rec"
    folder.mkdir()
    os.symlink("/dev/full", folder / "robot__robot_state.arrows")  # a disk that is full
    monkeypatch.setattr(recording, "FLUSH_S", 0.0)
    monkeypatch.setenv("RECORDING_DIR", str(folder))
    monkeypatch.setenv("MANDATORY", "true")
    events = [{"type": "INPUT", "id": "robot__robot_state", "value": state(k).to_arrow(),
               "metadata": {"stamp_ns": k, "seq": k, "frame_id": "base"}} for k in range(5)]
    mock = run_node(monkeypatch, recorder.main, events)
    assert len(mock.outputs["estop"]) == 1
    manifest = read_manifest(folder)
    assert manifest["complete"] is False and "No space left" in manifest["incomplete_reason"]


def test_record_refuses_unknown_topics_with_the_list():
    from tuina.recording.record import with_recorder

    spec = {"nodes": [{"id": "robot", "path": "x", "outputs": ["robot_state"]}]}
    with pytest.raises(ValueError, match="no output robot/state; it has: robot/robot_state"):
        with_recorder(spec, ["robot/state"], Path("/tmp/r"), Path("g.yml"))
    out = with_recorder(spec, ["robot/robot_state"], Path("/tmp/r"), Path("g.yml"))
    rec = out["nodes"][-1]
    assert rec["inputs"]["robot__robot_state"]["source"] == "robot/robot_state"
    spec["nodes"][0]["path"] = "tuina-franka"
    mandatory = with_recorder(spec, ["robot/robot_state"], Path("/tmp/r"), Path("g.yml"),
                              mandatory=True)
    assert mandatory["nodes"][0]["inputs"]["estop_recorder"] == "recorder/estop"
    assert mandatory["nodes"][-1]["env"]["MANDATORY"] is True
    assert rec["inputs"]["robot__robot_state"]["queue_size"] >= 1000


def test_the_session_summary_is_written_inside_the_recording(tmp_path):
    from tuina.config import load
    from tuina.recording.record import with_recorder
    from tuina.settings import session

    spec = {"nodes": [{"id": "robot", "path": "tuina-franka", "outputs": ["robot_state"]},
                      {"id": "session", "path": "tuina-session", "outputs": ["events"],
                       "env": {"RECORDINGS_DIR": "elsewhere", "TIMEOUT_S": 30}}]}
    out = with_recorder(spec, ["robot/robot_state"], tmp_path / "rec", Path("g.yml"))
    env = next(n for n in out["nodes"] if n["id"] == "session")["env"]
    cfg = load("session", session.PARAMS, {k: str(v) for k, v in env.items()})
    assert Path(cfg["RECORDINGS_DIR"]) / cfg["SESSION"] == (tmp_path / "rec").resolve()
    assert env["TIMEOUT_S"] == 30 and spec["nodes"][1]["env"]["RECORDINGS_DIR"] == "elsewhere"


def test_feed_order_repeats_the_interleaving_each_output_saw():
    from tuina.recording.replay import feed_order

    def table(seqs):
        return pa.table({"seq": pa.array(seqs, pa.int64()),
                         "recv_ns": pa.array([s * 10 for s in seqs], pa.int64())})

    rows = {"state": table(range(6)), "traj": table([0]), "motion": table([0, 1, 2])}
    outputs = [{"inputs": "state=2;traj=0", "trigger": "state"},
               {"inputs": "motion=1;state=3;traj=0", "trigger": "state"},
               {"inputs": "motion=2;state=5;traj=0", "trigger": "state"}]
    order = [f"{name[0]}{rows[name].column('seq')[i].as_py()}"
             for name, i in feed_order(rows, outputs)]
    # states 0-1 produced nothing (no trajectory yet); each output's trigger comes last
    assert order == ["s0", "s1", "t0", "s2", "m0", "m1", "s3", "s4", "m2", "s5"]
    # without any recorded output: the recording's own order
    assert [n[0] for n, _ in feed_order(rows, [])][:3] == ["s", "t", "m"]


def test_replay_graph_rewires_the_replaced_nodes_and_lists_missing_topics():
    from tuina.recording.replay import replay_graph

    spec = {"nodes": [
        {"id": "world", "path": "tuina-world", "outputs": ["depth"]},
        {"id": "tracker", "path": "t", "inputs": {"depth": "world/depth"},
         "outputs": ["motion"]},
        {"id": "ctrl", "path": "c", "inputs": {"state": "robot/state",
                                               "motion": "tracker/motion"},
         "outputs": ["command"]},
        {"id": "robot", "path": "tuina-franka", "inputs": {"command": "ctrl/command"},
         "outputs": ["state"]}]}
    graph, feeds = replay_graph(spec, ["world", "robot"], {"world/depth", "robot/state"})
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert set(nodes) == {"tracker", "ctrl", "replayer"}
    assert nodes["ctrl"]["inputs"]["motion"] == "tracker/motion"  # live
    assert nodes["ctrl"]["inputs"]["replay"]["source"] == "replayer/to_ctrl"
    assert feeds == {"tracker": [("world/depth", "depth")], "ctrl": [("robot/state", "state")]}
    with pytest.raises(ValueError, match=r"lacks topics .*robot/state \(for ctrl/state\)"):
        replay_graph(spec, ["world", "robot"], {"world/depth"})


def test_replay_graph_drops_a_dynamic_node_that_only_the_replaced_nodes_read():
    from tuina.recording.replay import replay_graph

    spec = {"nodes": [
        {"id": "ctrl", "path": "c", "inputs": {"state": "robot/state"}, "outputs": ["command"]},
        {"id": "robot", "path": "tuina-franka", "inputs": {"command": "ctrl/command",
                                                          "estop": "button/estop"},
         "outputs": ["state"]},
        {"id": "button", "path": "dynamic", "outputs": ["estop"]},
        {"id": "console", "path": "dynamic", "outputs": ["gain"]},
        {"id": "tuner", "path": "t", "inputs": {"gain": "console/gain"}}]}
    graph, _ = replay_graph(spec, ["robot"], {"robot/state"})
    assert {n["id"] for n in graph["nodes"]} == {"ctrl", "console", "tuner", "replayer"}


def test_a_replay_is_bounded_by_the_recorded_span_unless_the_recording_was_cut_short():
    from tuina.recording.replay import run_bound_s

    manifest = {"start_wall_ns": 0, "end_wall_ns": 70 * 10**9}
    assert run_bound_s(manifest, 1.0) == 200.0
    assert run_bound_s(manifest, 2.0) == 130.0
    assert run_bound_s(manifest, 0.0) == 200.0  # as fast as it goes: never slower than recorded
    assert run_bound_s({"start_wall_ns": 0}, 1.0) is None


def message(name: str, seq: int | None) -> dict:
    return {"type": "INPUT", "id": name, "metadata": {} if seq is None else {"seq": seq}}


def test_replay_gate_hands_inputs_on_in_the_recorded_order():
    from tuina.runtime import ReplayGate

    gate = ReplayGate([("state", 0), ("traj", 0), ("state", 1), ("motion", 0), ("state", 2)])
    seen = []
    # the live trajectory and motion arrive late, the replayed states early
    for event in [message("state", 0), message("state", 1), message("tick", None),
                  message("state", 2), message("state", 3), message("motion", 0),
                  message("traj", 0)]:
        seen += [(e["id"], e["metadata"].get("seq")) for e in gate.offer(event)]
    assert gate.done
    assert seen == [("state", 0), ("tick", None),  # inputs the plan does not name pass at once
                    ("traj", 0), ("state", 1), ("motion", 0), ("state", 2),
                    ("state", 3)]  # past the plan: after it, in arrival order
    assert [(e["id"], e["metadata"]["seq"]) for e in gate.offer(message("traj", 1))] == \
        [("traj", 1)]


def test_replay_gate_gives_up_in_plan_order_when_a_message_never_comes():
    from tuina.runtime import ReplayGate

    gate = ReplayGate([("a", 0), ("b", 0), ("a", 1), ("a", 2)])
    assert [e["metadata"]["seq"] for e in gate.offer(message("a", 0))] == [0]
    assert gate.offer(message("a", 2)) == [] and gate.offer(message("a", 1)) == []
    assert gate.waiting_for() == ("b", 0)
    assert [(e["id"], e["metadata"]["seq"]) for e in gate.give_up()] == [("a", 1), ("a", 2)]
    assert gate.done and gate.waiting_for() is None


class QueuedNode:
    """A dora node stand-in: ``next`` hands out a script of events, then STOP; ``drain``
    what dora still had queued behind it."""

    def __init__(self, script: list[dict], queued: list[dict]):
        self.script, self.queued = list(script), list(queued)

    def next(self, timeout: float | None = None) -> dict:
        if self.script:
            return self.script.pop(0)
        return {"type": "STOP", "id": "ALL_INPUTS_CLOSED"}

    def drain(self) -> list[dict]:
        out, self.queued = self.queued, []
        return out


def replayed(name: str, seq: int) -> dict:
    return {"type": "INPUT", "id": "replay", "metadata": {"seq": seq, "replay_input": name}}


def test_a_gated_node_meets_every_planned_input_even_after_its_replay_input_closes(
        tmp_path, monkeypatch):
    import json

    from tuina.runtime import REPLAY_ORDER_ENV, events

    plan = tmp_path / "order.json"
    plan.write_text(json.dumps([["state", 0], ["traj", 0], ["state", 1], ["state", 2]]))
    monkeypatch.setenv(REPLAY_ORDER_ENV, str(plan))
    # dora closes the replay input and stops the node ahead of messages it still holds
    node = QueuedNode([replayed("state", 0), replayed("state", 1),
                       {"type": "INPUT_CLOSED", "id": "replay"}],
                      [message("traj", 0), replayed("state", 2)])
    seen = [(e["id"], e["metadata"]["seq"]) for e in events(node)]
    assert seen == [("state", 0), ("traj", 0), ("state", 1), ("state", 2)]


def test_a_gated_node_waits_for_a_missing_message_only_so_long(tmp_path, monkeypatch, capfd):
    import json

    from tuina.runtime import REPLAY_ORDER_ENV, REPLAY_STALL_ENV, events

    plan = tmp_path / "order.json"
    plan.write_text(json.dumps([["state", 0], ["traj", 0], ["state", 1]]))
    monkeypatch.setenv(REPLAY_ORDER_ENV, str(plan))
    monkeypatch.setenv(REPLAY_STALL_ENV, "0.3")
    node = QueuedNode([replayed("state", 0), replayed("state", 1)], [])
    node.next = _timeouts_after(node.next, 2)  # the live trajectory never comes
    events_seen = []
    for event in events(node):
        events_seen.append((event["id"], event["metadata"]["seq"]))
        if len(events_seen) == 2:
            break
    assert events_seen == [("state", 0), ("state", 1)]
    err = capfd.readouterr().err
    assert "replay: no traj #0 for 0.3 s" in err and err.count("\n") == 1


def _timeouts_after(next_event, count: int):
    calls = {"n": 0}

    def wrapped(timeout: float | None = None) -> dict:
        calls["n"] += 1
        if calls["n"] <= count:
            return next_event(timeout)
        import time
        time.sleep(min(timeout or 0.1, 0.1))
        return {"type": "ERROR", "error": "Timeout while waiting for the next event"}
    return wrapped


def test_gated_replay_graph_holds_every_input_to_its_plan(tmp_path):
    import json

    from tuina.recording.replay import gated, replay_graph, replayer_feeds
    from tuina.runtime import REPLAY_ORDER_ENV

    spec = {"nodes": [
        {"id": "robot", "path": "tuina-franka", "inputs": {"command": "ctrl/command"},
         "outputs": ["state"]},
        {"id": "ctrl", "path": "c", "inputs": {"state": "robot/state",
                                               "traj": "planner/traj",
                                               "tick": "dora/timer/millis/10"},
         "outputs": ["command"], "env": {"GAIN": 2}}]}
    graph, _ = replay_graph(spec, ["robot"], {"robot/state"})
    order = {"ctrl": [("robot/state", 0, "state", 0), ("planner/traj", 0, "traj", 0),
                      ("robot/state", 1, "state", 1)]}
    assert replayer_feeds(order, ["robot"]) == {"ctrl": [("robot/state", 0, "state"),
                                                         ("robot/state", 1, "state")]}
    ctrl = next(n for n in gated(graph, order, tmp_path)["nodes"] if n["id"] == "ctrl")
    assert ctrl["env"]["GAIN"] == 2
    assert json.loads(Path(ctrl["env"][REPLAY_ORDER_ENV]).read_text()) == \
        [["state", 0], ["traj", 0], ["state", 1]]
    live = ctrl["inputs"]["traj"]  # a live input the plan waits for: never dropped
    assert live["source"] == "planner/traj" and live["queue_policy"] == "backpressure"
    assert ctrl["inputs"]["tick"] == "dora/timer/millis/10"
    assert ctrl["inputs"]["replay"]["source"] == "replayer/to_ctrl"


def test_report_counts_rates_latencies_and_plots_a_recording(tmp_path, capsys):
    from argparse import Namespace

    from tuina.messages import Command
    from tuina.recording.report import main as report_main
    from tuina.recording.report import session_series, summary, topic_table

    graph = ("nodes:\n  - id: robot\n    path: tuina-franka\n    outputs: [robot_state]\n"
             "  - id: force-controller\n    path: tuina-force-controller\n"
             "    inputs: {robot_state: robot/robot_state}\n    outputs: [command]\n")
    rec = Recorder(tmp_path / "rec", {"graph": graph})
    for k in range(200):  # 100 Hz states; each command 2 ms after its state
        rec.writers.setdefault("robot/robot_state", recording.TopicWriter(
            tmp_path / "rec" / "robot__robot_state.arrows")).add(
            state(k).to_arrow(), {"stamp_ns": k * 10_000_000, "seq": k}, 1_000 + k * 10**7)
        # approach, then the contact phase: searching (no force) to k = 80, pressing after
        phase = "approach" if k < 50 else "contact"
        force = 0.0 if k < 80 else 6.0 + (0.5 if k % 2 else -0.5)
        cmd = Command([0.4, 0, 0.2], [1.0, 0, 0, 0], [0.0] * 6, "track", phase,
                      6.0 if phase == "contact" else 0.0, force)
        rec.writers.setdefault("force-controller/command", recording.TopicWriter(
            tmp_path / "rec" / "force-controller__command.arrows")).add(
            cmd.to_arrow(), {"stamp_ns": k * 10_000_000, "seq": k,
                             "inputs": f"robot_state={k}", "trigger": "robot_state"},
            1_000 + k * 10**7 + 2_000_000)
    rec.close()
    manifest = read_manifest(tmp_path / "rec")
    topics = {r["topic"]: r for r in topic_table(tmp_path / "rec", manifest)
              .iter_rows(named=True)}
    assert topics["robot/robot_state"]["count"] == 200
    assert topics["robot/robot_state"]["rate_hz"] == pytest.approx(100.0)
    assert topics["force-controller/command"]["hop_ms_p50"] == pytest.approx(2.0)
    target = session_series(tmp_path / "rec", manifest)["force"]["target"]
    assert np.isnan(target[:80]).all() and (target[80:] == 6.0).all()  # from the first touch
    assert "force_rms_error_in_contact_n" not in summary(session_series(tmp_path / "rec",
                                                                        manifest))
    (tmp_path / "rec" / "summary.json").write_text(
        '{"ok": true, "force_rms_error_n": 0.11, "released_t": null, "problems": []}')
    assert report_main(Namespace(recording=str(tmp_path / "rec"), output=None)) == 0
    printed = capsys.readouterr().out
    assert "force_rms_error_n                0.110" in printed
    assert "released_t                       - (not measured)" in printed
    page = (tmp_path / "rec" / "report" / "report.html").read_text()
    assert "data:image/png;base64," in page and "force-controller/command" in page
    assert "<td>force_rms_error_n</td><td>0.110</td>" in page
    assert (tmp_path / "rec" / "report" / "force.png").stat().st_size > 1000


def test_a_command_past_its_time_is_killed_with_every_process_it_started():
    import sys
    import time
    from pathlib import Path

    from tuina.evaluation.sessions import run_group

    child = ("import subprocess, time; p = subprocess.Popen(['sleep', '30']); "
             "print(p.pid, flush=True); time.sleep(30)")
    proc, over = run_group([sys.executable, "-c", child], 2.0)
    assert over and proc.returncode == -9
    status = Path(f"/proc/{int(proc.stdout)}/status")

    def gone() -> bool:  # killed, maybe unreaped
        return not status.exists() or "State:\tZ" in status.read_text()

    deadline = time.monotonic() + 2.0  # SIGKILL lands once the process is scheduled
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gone()
    proc, over = run_group([sys.executable, "-c", "print('done')"], 10.0)
    assert not over and proc.returncode == 0 and proc.stdout == "done\n"


def test_a_recording_path_that_does_not_exist_is_named_as_such(tmp_path):
    with pytest.raises(RecordingError, match="no recording at .*missing: the folder does not "
                                             "exist"):
        read_manifest(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordingError, match="is not a recording"):
        read_manifest(tmp_path / "empty")


def test_a_nodes_outputs_are_replayed_in_the_order_it_sent_them_not_as_they_arrived():
    from tuina.recording.replay import feed_order, sent_order

    # the command went out after body_motion 1 and robot_state 2; the event after
    # body_motion 2, yet the recorder received the event first (another stream)
    command = {"inputs": "body_motion=1;robot_state=2", "trigger": "robot_state"}
    event = {"inputs": "body_motion=2;robot_state=2", "trigger": "body_motion"}
    ordered = sent_order([(2_000, command), (1_000, event)])
    assert ordered == [command, event]
    rows = {name: pa.table({"seq": [1, 2], "recv_ns": [10, 20]})
            for name in ("body_motion", "robot_state")}
    # so body_motion 2 reaches the node only after robot_state 2 made the command
    order = feed_order(rows, ordered)
    assert order.index(("robot_state", 1)) < order.index(("body_motion", 1))
