"""The FR3 node (nodes/franka.py) against a franky-like robot double: faults release contact
along the right direction, then hold; the session's end out of contact is clean."""

import time
from types import SimpleNamespace

import numpy as np
import pytest

from tests.test_baxter import TimedNode
from tuina.messages import Command, Header, RobotState, SessionEvent

SURFACE_Z = 0.2  # the body's skin under the tool
TISSUE_N_PER_M = 1500.0
START = np.array([0.5, 0.0, 0.21])
DOWN = [1.0, 0.0, 0.0, 0.0]  # x y z w: the tool points down


class FrankaDouble:
    """franky.Robot's surface the node uses; the tool goes where the last reference says and
    the body pushes back below SURFACE_Z. ``wrench_fault`` replaces the reading from a time
    on."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.tool = START.copy()
        self.references: list[tuple[float, np.ndarray]] = []
        self.collision = None
        self.has_errors = False
        self.wrench_fault: tuple[float, np.ndarray] | None = None

    def now_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    def recover_from_errors(self):
        pass

    def set_collision_behavior(self, torques, forces):
        self.collision = (list(torques), list(forces))

    def move(self, motion, asynchronous=False):
        pass

    def stop(self):
        pass

    def join_motion(self, timeout=None):
        pass

    @property
    def state(self):
        force = TISSUE_N_PER_M * max(SURFACE_Z - self.tool[2], 0.0)
        wrench = np.array([0.0, 0.0, -force, 0.0, 0.0, 0.0])
        if self.wrench_fault and time.monotonic() - self.t0 >= self.wrench_fault[0]:
            wrench = self.wrench_fault[1]
        ee = SimpleNamespace(translation=self.tool - [0.0, 0.0, -0.0466], quaternion=DOWN)
        return SimpleNamespace(time=SimpleNamespace(to_msec=self.now_ms), O_T_EE=ee,
                               O_F_ext_hat_K=tuple(wrench), q=[0.0] * 7, dq=[0.0] * 7,
                               tau_J=[0.0] * 7)


def command(position, normal=(0.0, 0.0, 1.0)) -> dict:
    cmd = Command(list(position), DOWN, [0.0] * 6, "hold", "press", 6.0, 6.0, [], list(normal))
    return {"type": "INPUT", "id": "command", "value": cmd.to_arrow(),
            "metadata": Header(0, 0, "base").to_metadata()}


def run_robot(monkeypatch, double, events, end_s, **env):
    import dora
    from tuina.nodes import franka

    original = franka.FrankaArm.send

    def send(arm, ref):
        original(arm, ref)
        double.references.append((time.monotonic() - double.t0, ref.position.copy()))
        double.tool = ref.position.copy()  # an ideal impedance: the tool is where it is sent

    monkeypatch.setattr(franka.FrankaArm, "send", send)
    monkeypatch.setattr(franka, "connect", lambda *a: double)
    monkeypatch.setenv("CLOSE_TIMEOUT_S", "3.0")
    # these tests name one fault each; the 0.1 s watchdog (tested in test_supervisor.py) would
    # fire first whenever a loaded machine delays the double's 100 Hz commands by 0.1 s
    monkeypatch.setenv("WATCHDOG_S", "0.5")
    monkeypatch.setenv("TARE_S", "0")  # the double's wrench is a contact from its first state
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    node = TimedNode(events, end_s, lambda: double.now_ms() * 1_000_000)
    monkeypatch.setattr(dora, "Node", lambda *a, **k: node)
    franka.main()
    return node.mock


def pressing_then(extra: list, press_s: float = 0.5) -> list:
    """Commands that bring the tool 4 mm into the body (6 N) and hold it there."""
    pressed = [0.5, 0.0, SURFACE_Z - 0.004]
    steps = int(press_s / 0.01)
    return [(0.2 + 0.01 * k, command(pressed)) for k in range(steps)] + extra


def events_of(mock) -> list[SessionEvent]:
    return [SessionEvent.from_arrow(v) for v in mock.outputs.get("events", [])]


def test_a_closed_command_input_releases_straight_away_from_the_force(monkeypatch):
    double = FrankaDouble()
    closed = {"type": "INPUT_CLOSED", "id": "command"}
    mock = run_robot(monkeypatch, double, pressing_then([(0.75, closed)]), end_s=2.0)
    assert double.collision[1][:3] == [pytest.approx(18.0)] * 3  # FORCE_CAP_N x 1.2
    said = events_of(mock)
    assert [(e.kind, e.fault) for e in said] == [("error", "command_closed"),
                                                 ("released", "command_closed")]
    pressed_z = SURFACE_Z - 0.004
    # the input closes at 0.75 s (wall); a loaded machine may handle it later, the press's
    # references still coming down to pressed_z meanwhile: from the lowest one on (where the
    # release starts) the tool only goes away, and never deeper than it was pressing
    after = np.array([p for t, p in double.references if t > 0.75])
    lowest = int(np.argmin(after[:, 2]))
    assert after[lowest, 2] >= pressed_z - 1e-9
    assert np.all(np.diff(after[lowest:, 2]) >= -1e-12)  # only away from the body
    assert after[-1][2] == pytest.approx(pressed_z + 0.03, abs=1e-3)  # RELEASE_M
    np.testing.assert_allclose(after[:, :2], [[0.5, 0.0]] * len(after), atol=1e-9)
    statuses = [RobotState.from_arrow(s).status for s in mock.outputs["robot_state"]]
    assert "ok" in statuses and statuses[-1] == "faulted:command_closed"


def test_a_nan_wrench_releases_along_the_commanded_normal(monkeypatch):
    double = FrankaDouble()
    double.wrench_fault = (0.7, np.full(6, np.nan))
    normal = (0.0, 0.6, 0.8)
    pressed = [0.5, 0.0, SURFACE_Z - 0.004]
    events = [(0.2 + 0.01 * k, command(pressed, normal)) for k in range(80)]
    mock = run_robot(monkeypatch, double, events, end_s=2.0)
    assert [e.fault for e in events_of(mock)][:1] == ["wrench_invalid"]
    moved = double.references[-1][1] - np.asarray(pressed)
    np.testing.assert_allclose(moved / np.linalg.norm(moved), normal, atol=1e-6)
    assert np.linalg.norm(moved) == pytest.approx(0.03, abs=1e-3)


def test_the_end_of_the_session_out_of_contact_is_clean(monkeypatch):
    double = FrankaDouble()
    above = [0.5, 0.0, SURFACE_Z + 0.01]
    done = {"type": "INPUT", "id": "events", "value": SessionEvent("done", "ok").to_arrow(),
            "metadata": Header(0, 0, "-").to_metadata()}
    events = [(0.2 + 0.01 * k, command(above)) for k in range(30)] + [(0.505, done)]
    start = time.monotonic()
    mock = run_robot(monkeypatch, double, events, end_s=3.0)
    assert time.monotonic() - start < 1.5  # it ends at done, not at the graph's stop
    assert not events_of(mock)
    assert RobotState.from_arrow(mock.outputs["robot_state"][-1]).status == "finished"
    assert double.references[-1][1][2] >= SURFACE_Z


def test_another_node_gone_mid_press_is_a_fault_the_session_gone_ends_cleanly(monkeypatch):
    double = FrankaDouble()
    gone = {"type": "INPUT_CLOSED", "id": "events_tracker"}
    mock = run_robot(monkeypatch, double, pressing_then([(0.75, gone)]), end_s=2.0)
    said = events_of(mock)
    assert said[0].fault == "node_gone" and "events_tracker" in said[0].detail
    assert double.references[-1][1][2] > SURFACE_Z + 0.02  # released
    double = FrankaDouble()
    above = [0.5, 0.0, SURFACE_Z + 0.01]
    events = [(0.2 + 0.01 * k, command(above)) for k in range(30)]
    events.append((0.505, {"type": "INPUT_CLOSED", "id": "events"}))
    mock = run_robot(monkeypatch, double, events, end_s=3.0)
    assert not events_of(mock)
    assert RobotState.from_arrow(mock.outputs["robot_state"][-1]).status == "finished"
