"""The console: routines, the queue of steps, who may talk to its server, a session of many
steps scored step by step, a drawn stroke scored on its path, the live force target."""

import json
import socket
import urllib.error
import urllib.request
from types import SimpleNamespace as Msg

import numpy as np
import pytest
from tuina.operators.console import (
    RoutineError,
    Step,
    StepQueue,
    clamp_force,
    is_loopback,
    load_routine,
    origin_ok,
    token_ok,
)
from tuina.operators.session import SessionEnding, SessionLimits, SessionWatch, summarize

from tuina.console_server import ConsoleServer


def test_the_session_node_takes_each_bound_from_its_own_key():
    from tuina.nodes.session import session_limits

    from tuina.settings.session import PARAMS

    cfg = {p.key: p.default for p in PARAMS} | {"MAX_FORCE_RMS_ERROR_N": 1.2,
                                               "FORCE_CAP_N": 14.0}
    limits = session_limits(cfg)
    assert limits.max_force_rms_error_n == 1.2 and limits.force_cap_n == 14.0
    assert limits.max_acupoint_error_mm == cfg["MAX_ACUPOINT_ERROR_MM"]
    assert limits.max_normal_error_deg == cfg["MAX_NORMAL_ERROR_DEG"]
    assert limits.max_stroke_error_mm == SessionLimits().max_stroke_error_mm


def test_the_graphs_routine_loads_as_three_instructions():
    steps = load_routine("dataflows/routines/three-steps.yml")
    assert [s.text for s in steps] == ["press Tianshu with moderate pressure for 5 s",
                                       "knead Qihai with moderate pressure",
                                       "stroke Zusanli with moderate pressure"]


@pytest.mark.parametrize("text, says", [
    ("steps:\n  - acupoint: Zusanlii\n", "step 1: no known acupoint in"),
    ("steps:\n  - acupoint: ST36\n    pressure: crushing\n", "pressure 'crushing'; use one"),
    ("steps:\n  - acupoint: ST36\n    stroke: [1, 2, 3, 4]\n", "either 'acupoint'"),
    ("steps:\n  - stroke: [100, 200, 150]\n", "pairs of pixels u,v"),
    ("steps:\n  - stroke: [100, 200]\n", "one point (a click) is pressed"),
    ("steps:\n  - acupoint: ST36\n    speed: 3\n", "unknown key(s) ['speed']"),
    ("steps:\n  - acupoint: ST36\n    duration_s: ten\n", "duration_s must be a number"),
    ("steps:\n  - acupoint: ST36\n    duration_s: 0\n", "a hold of 0 s"),
    ("steps:\n  - acupoint: ST36\n    duration_s: 301\n", "at most 300 s"),
    ("steps:\n  - stroke: [1, 2, 3, 4]\n    duration_s: 5\n", "a duration belongs to a press"),
    ("steps: []\n", "has no 'steps:' list"),
    ("steps: [\n", "is not YAML"),
])
def test_a_bad_routine_is_refused_with_one_line_naming_the_step(tmp_path, text, says):
    path = tmp_path / "routine.yml"
    path.write_text(text)
    with pytest.raises(RoutineError) as err:
        load_routine(path)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_steps_duration_reaches_the_plan_as_its_hold():
    """"for N s" (or a routine's duration_s) -> the grounded target -> the target pose -> the
    planner's hold at the force; without it, the graph's PRESS_S."""
    from dataclasses import replace

    from tuina.operators.instructions import hold_seconds, parse_instruction
    from tuina.operators.planner import PlannerConfig, plan_massage

    from tuina.messages import GroundedTarget, TargetPose, decode_targets, encode_targets

    assert parse_instruction("knead ST36 lightly for 1 minute").hold_s == 60.0
    assert parse_instruction("按足三里20秒").hold_s == 20.0
    assert parse_instruction("press point number 1 for 2.5 seconds").hold_s == 2.5
    assert parse_instruction("press Zusanli").hold_s == hold_seconds("press Zusanli") == 0.0
    grounded = GroundedTarget("ST36", "Zusanli", 1, [0, 0, 1, 1], [0, 0], [], 1.0, 6.0,
                              "press", 7, hold_s=12.0)
    assert decode_targets(encode_targets([grounded]))[0].hold_s == 12.0
    pose = TargetPose("ST36", [0.4, 0, 0.1], [0, 0, 0, 1.0], [0, 0, 1.0], [], 6.0, "press", 7,
                      hold_s=12.0)
    assert TargetPose.from_arrow(pose.to_arrow()).hold_s == 12.0

    def pressing_s(cfg: PlannerConfig) -> float:
        plan = plan_massage(np.array([0.4, 0.0, 0.3]), np.array([1.0, 0, 0, 0]),
                            np.array([0.4, 0.0, 0.1]), np.array([0.0, 0, 1]),
                            np.array([1.0, 0, 0, 0]), np.zeros((0, 3)), 6.0, "press", cfg)
        return plan.phases.count("press") * cfg.dt

    cfg = PlannerConfig(press_s=3.0)
    assert pressing_s(cfg) == pytest.approx(3.0, abs=0.02)
    assert pressing_s(replace(cfg, press_s=12.0)) == pytest.approx(12.0, abs=0.02)


def test_a_missing_routine_names_the_key_to_set(tmp_path):
    with pytest.raises(RoutineError, match="set ROUTINE"):
        load_routine(tmp_path / "none.yml")


def test_steps_go_one_at_a_time_and_a_routine_ends_with_its_last():
    queue = StepQueue([Step("press ST36"), Step("knead CV6")], first_at_ns=1_000,
                      open_ended=False)
    assert queue.due(999) is None  # not before AT_S
    assert queue.due(1_000).text == "press ST36" and not queue.last
    assert queue.due(2_000) is None  # one runs
    queue.step_done()
    assert queue.due(3_000).text == "knead CV6" and queue.last
    queue.step_done()
    assert queue.due(4_000) is None


def test_a_person_adds_steps_and_ends_the_session():
    queue = StepQueue([], first_at_ns=0, open_ended=True)
    assert queue.due(0) is None
    queue.add(Step("press ST36"))
    assert queue.due(1).text == "press ST36" and not queue.last  # a person may add more
    queue.add(Step("knead CV6"))
    assert not queue.finish()  # a step runs: the session ends after it
    queue.step_done()
    assert queue.due(2) is None  # what waited is dropped


def test_only_loopback_goes_without_a_token_and_pages_from_elsewhere_are_refused():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    assert token_ok("", None) and token_ok("abc", "abc")
    assert not token_ok("abc", None) and not token_ok("abc", "abd")
    assert origin_ok(None, "10.0.0.2:8765")
    assert origin_ok("http://10.0.0.2:8765", "10.0.0.2:8765")
    assert not origin_ok("http://evil.example", "10.0.0.2:8765")


def test_the_slider_stays_within_the_caps():
    assert clamp_force(30.0, 1.0, 15.0) == 15.0 and clamp_force(0.2, 1.0, 15.0) == 1.0
    with pytest.raises(ValueError):
        clamp_force(float("nan"), 1.0, 15.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, headers: dict | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_off_loopback_a_request_without_the_token_gets_401_and_nothing_else():
    port = free_port()
    server = ConsoleServer("0.0.0.0", port, "s3cret", image_hz=10)
    server.start()
    try:
        base = f"http://127.0.0.1:{port}"
        status, body = get(base + "/")
        assert status == 401 and "tuina console" not in body and "token" in body
        assert get(base + "/?token=wrong")[0] == 401
        assert get(base + "/ws")[0] == 401  # the websocket as well
        status, body = get(base + "/?token=s3cret")
        assert status == 200 and "tuina console" in body and "E-STOP" in body
        # another site's page, even with the token, may not drive the robot
        assert get(base + "/?token=s3cret", {"Origin": "http://evil.example"})[0] == 401
        assert server.requests.empty()  # nothing reached the node
    finally:
        server.stop()


def test_a_port_taken_is_an_error_at_start():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            ConsoleServer("127.0.0.1", taken.getsockname()[1], "", 10).start()


# --- sessions of several steps -----------------------------------------------------------

MS = 1_000_000


def press(watch: SessionWatch, start_ms: int, code: str) -> None:
    """Two seconds of a 6 N press on ``code`` 2 mm off, then the controller's done."""
    watch.on_target(Msg(code=code, normal=[0.0, 0.0, 1.0], path=[], source_stamp_ns=0))
    point = np.array([0.5, 0.2, 0.1])
    for k in range(200):
        stamp = (start_ms + 10 * k) * MS
        watch.heard(stamp)
        watch.on_command(Msg(phase="press", force_measured_n=6.0, force_target_n=6.0), stamp)
        watch.on_truth(Msg(max_contact_force_n=6.0, acupoint_positions=list(point),
                           acupoint_normals=[0.0, 0.0, 1.0], acupoint_codes=[code],
                           body_quaternion=[0.0, 0.0, 0.0, 1.0],
                           contact_point=list(point + [0.002, 0, 0]),
                           contact_force=[0.0, 0.0, -6.0]), stamp)
    watch.on_event(Msg(kind="done", detail="done", fault=""), (start_ms + 2000) * MS)


def step(index: int, last: bool) -> Msg:
    return Msg(kind="step", detail=json.dumps({"index": index, "text": f"step {index}",
                                               "last": last}), fault="")


def test_a_session_of_steps_scores_each_and_ends_after_the_last():
    watch = SessionWatch(SessionEnding(release_wait_s=5.0, replan_wait_s=15.0, timeout_s=10.0))
    watch.on_event(step(1, last=False), 0)
    press(watch, 0, "ST36")
    assert watch.step_complete and watch.due() is None  # more steps follow: not the end
    first = summarize(watch.log, watch.duration_s, SessionLimits())
    watch.next_step(first)
    assert first["ok"] and first["acupoint_error_mm"] == pytest.approx(2.0)
    # between steps the session waits for the person as long as it takes
    watch.heard(60_000 * MS)
    assert watch.due() is None
    watch.on_event(step(2, last=True), 60_000 * MS)
    # each step's timeout counts from its own start
    watch.heard(69_000 * MS)
    assert watch.due() is None and watch.log.force_t == []  # a fresh log
    press(watch, 69_000, "CV6")
    assert watch.due() == "" and len(watch.steps) == 1  # the last step's done ends it
    watch2 = SessionWatch(SessionEnding(5.0, 15.0, 10.0))
    watch2.on_event(step(1, last=False), 0)
    watch2.heard(11_000 * MS)
    assert "timed out" in watch2.due()


def test_the_person_ends_a_session_that_waits_for_the_next_step():
    watch = SessionWatch(SessionEnding(5.0, 15.0, 10.0))
    watch.on_event(step(1, last=False), 0)
    press(watch, 0, "ST36")
    watch.next_step(summarize(watch.log, watch.duration_s, SessionLimits()))
    assert watch.due() is None
    watch.on_event(Msg(kind="finish", detail="", fault=""), 3_000 * MS)
    assert watch.due() == ""


def test_a_drawn_stroke_is_scored_on_its_path_not_on_an_acupoint():
    """A stroke drawn on the image has no acupoint (code STROKE): the tool against the drawn
    line carried to the body, and the true force along the target's normal."""
    watch = SessionWatch(SessionEnding(5.0, 15.0, 60.0))
    path = np.array([[0.5, 0.2, 0.1], [0.5, 0.3, 0.1]])
    watch.on_target(Msg(code="STROKE", normal=[0.0, 0.0, 1.0], path=list(path.ravel()),
                        source_stamp_ns=0))
    anchor = np.array([0.45, 0.25, 0.1])  # any point of the body carries its motion
    for k in range(300):
        stamp = k * 10 * MS
        shift = np.array([0.0, 0.0, 0.0]) if k < 100 else np.array([0.01, 0.0, 0.0])
        watch.heard(stamp)
        phase = "stroke" if k >= 150 else "press"
        watch.on_command(Msg(phase=phase, force_measured_n=4.0, force_target_n=4.0), stamp)
        # the tool 3 mm beside the line, the line moving with the body after 1 s
        contact = path[0] + [0.0, 0.1 * k / 300, 0.0] + shift + [0.003, 0, 0]
        watch.on_truth(Msg(max_contact_force_n=4.0, acupoint_positions=list(anchor + shift),
                           acupoint_normals=[0.0, 0.0, 1.0], acupoint_codes=["ST36"],
                           body_quaternion=[0.0, 0.0, 0.0, 1.0], contact_point=list(contact),
                           contact_force=[0.0, 0.0, -4.0]), stamp)
    good = summarize(watch.log, watch.duration_s, SessionLimits(), drawn=True)
    assert good["ok"], good["problems"]
    assert good["stroke_tracking_mm"] == pytest.approx(3.0, abs=0.01)
    assert good["force_rms_error_n"] == pytest.approx(0.0, abs=1e-9)
    assert not any("acupoint" in p for p in good["problems"])
    far = summarize(watch.log, watch.duration_s, SessionLimits(max_stroke_error_mm=2.0),
                    drawn=True)
    assert "stroke path error 3.0 mm > 2.0 mm" in far["problems"]


def test_the_slider_scales_the_running_plans_force_under_the_cap():
    from tuina.operators.force_control import ForceConfig, PlanFollower
    from tuina.operators.planner import Plan

    follower = PlanFollower(ForceConfig(force_cap_n=15.0), 1.0, 0.0, 0.1)
    assert follower.set_force_target(4.0) == 0.0  # no plan: nothing to change
    t = np.arange(5) * 0.02
    follower.plan = Plan(t, np.zeros((5, 3)), np.tile([0, 0, 0, 1.0], (5, 1)),
                         np.array([0.0, 3.0, 6.0, 6.0, 0.0]), ["approach"] + ["press"] * 3
                         + ["retreat"], np.tile([0, 0, 1.0], (5, 1)), np.zeros((5, 7)))
    assert follower.set_force_target(4.0) == 4.0
    assert follower.plan.forces_n.tolist() == pytest.approx([0.0, 2.0, 4.0, 4.0, 0.0])
    assert follower.set_force_target(40.0) == pytest.approx(13.5)  # 0.9 of the cap
    assert max(follower.plan.forces_n) == pytest.approx(13.5)


# --- the node's console: what the page's requests and the graph's events do --------------

class FakeNode:
    def __init__(self) -> None:
        self.sent: list[tuple[str, object, dict]] = []

    def send_output(self, output: str, array, metadata: dict) -> None:
        self.sent.append((output, array, metadata))

    def outputs(self, name: str) -> list:
        return [(array, meta) for output, array, meta in self.sent if output == name]


class FakeServer:
    def __init__(self) -> None:
        self.pages, self.ever_connected, self.last_seen = 1, True, 0.0


def make_console(**env):
    from tuina.nodes.console import Console

    from tuina.runtime import Outputs
    from tuina.settings.console import PARAMS

    cfg = {p.key: p.default for p in PARAMS} | {"SERVE": True} | env
    node, server = FakeNode(), FakeServer()
    console = Console(cfg, Outputs(node), server)
    console.stamp = 5_000_000_000
    return console, node, server


def events_sent(node: FakeNode) -> list:
    from tuina.messages import SessionEvent

    return [SessionEvent.from_arrow(array) for array, _ in node.outputs("events")]


def test_a_step_asked_on_the_page_goes_out_once_and_a_bad_one_is_refused():
    console, node, _ = make_console()
    console.on_request({"type": "step", "text": "press Zusanlii"})
    console.on_request({"type": "step", "text": "press Zusanli", "stroke_px": [1, 2, 3]})
    assert [e["kind"] for e in console.page.events] == ["refused", "refused"]
    console.info = object()
    console.send_due_step()
    assert node.sent == []  # nothing moves on a bad request
    console.on_request({"type": "step", "text": "press Zusanli with moderate pressure"})
    console.send_due_step()
    console.send_due_step()
    assert len(node.outputs("instruction")) == 1
    step = json.loads(events_sent(node)[0].detail)
    assert step["index"] == 1 and not step["last"]  # a person may ask for more


def test_only_the_sessions_done_ends_the_console_not_a_steps():
    from tuina.messages import SessionEvent

    console, _, _ = make_console()
    console.on_event(SessionEvent("done", "done"), from_session=False)  # the controller's
    assert not console.page.ended
    console.on_event(SessionEvent("done", "ok"), from_session=True)
    assert console.page.ended


def test_every_page_closed_mid_step_pauses_it_and_a_page_back_resumes_it():
    import time

    console, node, server = make_console(DEADMAN=True, DEADMAN_S=1.0,
                                         INSTRUCTION="press Zusanli", AT_S=0.0)
    console.info = object()
    console.send_due_step()
    server.pages, server.last_seen = 0, time.monotonic() - 0.5
    console.dead_man()
    assert not [e for e in events_sent(node) if e.kind == "pause"]  # not yet 1 s
    server.last_seen = time.monotonic() - 1.5
    console.dead_man()
    console.dead_man()
    pauses = [e for e in events_sent(node) if e.kind == "pause"]
    assert len(pauses) == 1 and "dead-man" in pauses[0].detail and console.page.paused
    assert not [e for e in events_sent(node) if e.kind == "error"]  # nothing latched
    # a page opens again and resumes: the same step goes out again
    server.pages = 1
    console.on_request({"type": "resume"})
    assert [e.kind for e in events_sent(node)][-1] == "resume" and not console.page.paused
    from tuina.messages import Instruction

    instructions = [Instruction.from_arrow(a).text for a, _ in node.outputs("instruction")]
    assert instructions == ["press Zusanli", "press Zusanli"]
    # off (the sim graph's default), or no step running: nothing happens
    quiet, quiet_node, quiet_server = make_console(DEADMAN=False, INSTRUCTION="press Zusanli")
    quiet.info = object()
    quiet.send_due_step()
    quiet_server.pages, quiet_server.last_seen = 0, time.monotonic() - 10
    quiet.dead_man()
    idle, idle_node, idle_server = make_console(DEADMAN=True)
    idle_server.pages, idle_server.last_seen = 0, time.monotonic() - 10
    idle.dead_man()
    assert not [e for e in events_sent(quiet_node) + events_sent(idle_node)
                if e.kind in ("pause", "error")]


def test_pause_and_resume_from_the_page_only_when_they_mean_something():
    console, node, _ = make_console(INSTRUCTION="knead Qihai with light pressure", AT_S=0.0)
    console.on_request({"type": "resume"})  # nothing paused
    console.on_request({"type": "pause"})  # nothing running yet
    assert [e["kind"] for e in console.page.events] == ["refused", "refused"]
    assert events_sent(node) == []
    console.info = object()
    console.send_due_step()
    console.on_request({"type": "pause"})
    console.on_request({"type": "pause"})  # once is enough
    kinds = [e.kind for e in events_sent(node)]
    assert kinds == ["step", "pause"] and console.page.snapshot()["paused"]
    console.on_request({"type": "resume"})
    console.on_request({"type": "resume"})
    assert [e.kind for e in events_sent(node)] == ["step", "pause", "resume"]
    assert len(node.outputs("instruction")) == 2
    # ending the session while paused stops the paused step (nothing else would finish it)
    console.on_request({"type": "pause"})
    console.on_request({"type": "end"})
    stop = events_sent(node)[-1]
    assert stop.kind == "error" and stop.fault == "stop" and "paused" in stop.detail


def test_the_pages_estop_goes_out_stamped_with_the_click_and_the_slider_is_capped():
    import time

    console, node, _ = make_console()
    clicked_ms = time.time() * 1000 - 20
    console.on_request({"type": "estop", "clicked_ms": clicked_ms, "received": 0.0})
    (value, meta), = node.outputs("estop")
    assert value.to_pylist() == [True] and meta["source"] == "console"
    assert abs(meta["stamp_ns"] - clicked_ms * 1e6) < 1e3  # the click's time, not the send's
    console.on_request({"type": "estop", "clicked_ms": 0, "received": 0.0})  # a page's clock
    assert time.time_ns() - node.outputs("estop")[1][1]["stamp_ns"] < 1e9  # far off: now
    console.on_request({"type": "pressure", "force_n": 40})
    console.on_request({"type": "pressure", "force_n": "lots"})
    (force, _), = node.outputs("force_target")
    assert force.to_pylist() == [15.0] and console.page.events[-1]["kind"] == "refused"


def test_the_persons_force_holds_through_a_new_plan_of_the_same_step():
    from tuina.messages import Trajectory

    console, node, _ = make_console(INSTRUCTION="press Zusanli", AT_S=0.0)
    console.info = None  # nothing to project onto: the force is what is checked
    console.send_due_step()
    plan = Trajectory(0, [0.0, 1.0], [0.5, 0, 0.3, 0.5, 0, 0.2], [0, 0, 0, 1.0] * 2,
                      [0.0, 6.0], ["approach", "press"], [0, 0, 1.0] * 2, [0.0] * 14, "ST36", 0)
    event = {"value": plan.to_arrow(), "metadata": {"stamp_ns": 6_000_000_000}}
    console.on_input("trajectory", event)
    assert node.outputs("force_target") == []  # the plan's own force, nobody changed it
    console.on_request({"type": "pressure", "force_n": 4.0})
    console.on_input("trajectory", event)  # found again mid-step: a new plan at 6 N
    assert [f.to_pylist() for f, _ in node.outputs("force_target")] == [[4.0], [4.0]]


def test_a_click_on_the_image_is_pressed_there_and_scored_on_that_point():
    from tuina.operators.grounding import GroundingError, validate_click

    assert validate_click([320.5, 240.0], 640, 480).tolist() == [320.5, 240.0]
    with pytest.raises(GroundingError, match="outside the 640x480 image"):
        validate_click([700, 10], 640, 480)
    Step("press with light pressure", (320.0, 240.0)).check()
    with pytest.raises(ValueError, match="a stroke needs at least two points"):
        Step("stroke with light pressure", (320.0, 240.0)).check()
    # scored: the true contact against the clicked point carried with the body
    watch = SessionWatch(SessionEnding(5.0, 15.0, 60.0))
    clicked = np.array([0.5, 0.2, 0.1])
    watch.on_target(Msg(code="POINT", position=list(clicked), normal=[0.0, 0.0, 1.0],
                        path=[], source_stamp_ns=0))
    for k in range(200):
        stamp = k * 10 * MS
        shift = np.array([0.0, 0.004, 0.0]) if k >= 100 else np.zeros(3)  # the body moves
        watch.heard(stamp)
        watch.on_command(Msg(phase="press", force_measured_n=6.0, force_target_n=6.0), stamp)
        watch.on_truth(Msg(max_contact_force_n=6.0, acupoint_positions=list(clicked + shift),
                           acupoint_normals=[0.0, 0.0, 1.0], acupoint_codes=["ST36"],
                           body_quaternion=[0.0, 0.0, 0.0, 1.0],
                           contact_point=list(clicked + shift + [0.002, 0.0, 0.0]),
                           contact_force=[0.0, 0.0, -6.0]), stamp)
    summary = summarize(watch.log, watch.duration_s, SessionLimits(), drawn=True)
    assert summary["ok"], summary["problems"]
    assert summary["acupoint_error_max_mm"] == pytest.approx(2.0)  # it followed the body
    off = summarize(watch.log, watch.duration_s, SessionLimits(max_acupoint_error_mm=1.0),
                    drawn=True)
    assert "clicked point error 2.0 mm > 1.0 mm" in off["problems"]


def test_a_page_closing_as_it_is_sent_to_stops_no_other_page(capsys):
    """A tab closed mid-send (aiohttp: "Cannot write to closing transport") once ended the
    server's push loop: every other page froze on its last state. Now only that send fails."""
    import asyncio

    from aiohttp.client_exceptions import ClientConnectionResetError

    class Page:
        def __init__(self, fail_with: Exception | None = None) -> None:
            self.closed, self.fail_with, self.texts = False, fail_with, []

        async def send_str(self, text: str) -> None:
            if self.fail_with is not None:
                raise self.fail_with
            self.texts.append(text)

        async def send_bytes(self, data: bytes) -> None:
            pass

    server = ConsoleServer("127.0.0.1", 0, "", 15.0)
    closing, other = Page(ClientConnectionResetError("Cannot write to closing transport")), Page()
    server._sockets = {closing, other}
    server.show_state({"phase": "press"})
    asyncio.run(server._push_once(set(), -1, b"", 0.0))
    assert [json.loads(t)["phase"] for t in other.texts] == ["press"]

    # any other fault of one page is said once and every other page goes on being updated,
    # whichever comes first
    for n in range(4):
        server._sockets = {Page(RuntimeError("boom")) for _ in range(n)} | {other} | {
            Page(RuntimeError("boom")) for _ in range(n)}
        before = len(other.texts)
        asyncio.run(server._push_once(set(), -1, b"", 0.0))
        assert len(other.texts) == before + 1
    said = [line for line in capsys.readouterr().out.splitlines() if "boom" in line]
    assert said == ["console: a page could not be sent the state (RuntimeError: boom)"]

    async def run_a_while() -> None:  # the loop itself outlives a failing round
        try:
            await asyncio.wait_for(server._push(), 1.5)
        except TimeoutError:
            pass

    server._sockets = {other}
    server._frame = (0, np.zeros((4, 4, 2), np.uint8))  # not an RGB image: the encoder refuses
    before = len(other.texts)
    asyncio.run(run_a_while())
    assert len(other.texts) >= before + 3  # the state goes on
    assert capsys.readouterr().out.count("a camera frame could not be encoded") == 1
    server._state = None  # and a round that fails as a whole is said, the loop lives on
    server._sockets = {Page(TypeError("no")), other}
    asyncio.run(run_a_while())
    out = capsys.readouterr().out
    assert out.count("a page could not be sent the state (TypeError: no)") == 1, out


def test_the_target_and_its_normal_are_drawn_on_the_image():
    from tuina.messages import CameraInfo, TargetPose

    console, _, _ = make_console(INSTRUCTION="press Zusanli", AT_S=0.0)
    console.info = CameraInfo(640, 480, 500.0, 500.0, 320.0, 240.0, [0.0] * 5,
                              np.eye(4).ravel().tolist(), 1e-4)
    pose = TargetPose("ST36", [0.1, 0.0, 1.0], [0, 0, 0, 1.0], [0.0, -1.0, 0.0], [], 6.0,
                      "press", 7)
    console.on_input("target_pose", {"value": pose.to_arrow(),
                                     "metadata": {"stamp_ns": 6_000_000_000}})
    # 4 cm along the normal from the point: 370, 240 -> 370, 220 on a 500 px lens
    assert console.page.snapshot()["normal_px"] == [[370.0, 240.0], [370.0, 220.0]]
    console.send_due_step()  # a new step: nothing of the last one's target is shown
    assert console.page.snapshot()["normal_px"] == []
