"""The viewer node: wired to what a graph outputs, writes its .rrd whole or not at all."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from tuina.messages import Command, Header, encode_rgb
from tuina.run import with_viewer

from .test_export import rrd_rows
from .test_nodes import camera_info_event, run_node
from .test_recording import state

ROOT = Path(__file__).resolve().parents[1]


def graph(name: str) -> dict:
    return yaml.safe_load((ROOT / "dataflows" / name).read_text())


def test_the_viewer_subscribes_to_every_output_it_shows():
    spec = with_viewer(graph("sim.yml"), "save", Path("/tmp/s.rrd"))
    viewer = spec["nodes"][-1]
    assert viewer["path"] == "tuina-viewer" and viewer["env"] == {
        "MODE": "save", "ARM": "fr3", "RRD_FILE": "/tmp/s.rrd"}
    inputs = viewer["inputs"]
    # the image the nodes see (the camera's, not the world's clean render), the newest only
    assert inputs["rgb"] == {"source": "camera/rgb", "queue_size": 1}
    assert inputs["camera_info"] == "camera/camera_info"
    assert inputs["robot_state"] == "robot/robot_state"
    assert inputs["command"] == "force-controller/command"
    assert inputs["ground_truth"] == "world/ground_truth"
    events = {k: v for k, v in inputs.items() if k.startswith("events")}
    assert len(events) >= 3 and events["events_session"] == "session/events"  # every node
    # what the graph's nodes get is unchanged
    assert spec["nodes"][:-1] == graph("sim.yml")["nodes"]
    baxter = with_viewer(graph("baxter-sim.yml"), "serve")["nodes"][-1]
    assert baxter["env"] == {"MODE": "serve", "ARM": "baxter_left"}
    with pytest.raises(ValueError, match="already has a node 'viewer'"):
        with_viewer(spec, "save")


def viewer_events() -> list[dict]:
    rgb, meta = encode_rgb(np.zeros((48, 64, 3), np.uint8), Header(5, 0, "camera"))
    events = [camera_info_event(0), {"type": "INPUT", "id": "rgb", "value": rgb,
                                      "metadata": meta}]
    for k in range(20):
        events.append({"type": "INPUT", "id": "robot_state", "value": state(k).to_arrow(),
                       "metadata": Header(10_000_000 * k, k, "base").to_metadata()})
        events.append({"type": "INPUT", "id": "command", "value": Command(
            [0.5, 0, 0.2], [1.0, 0, 0, 0], [0.0] * 6, "track", "press", 6.0, 5.0).to_arrow(),
            "metadata": Header(10_000_000 * k, k, "base").to_metadata()})
    events.append({"type": "INPUT", "id": "tick", "value": None, "metadata": {}})  # a timer
    return [*events, {"type": "STOP"}]


def test_the_viewer_node_writes_its_rrd_whole_when_the_graph_stops(monkeypatch, tmp_path):
    from tuina.nodes import viewer

    out = tmp_path / "live.rrd"
    monkeypatch.setenv("RRD_FILE", str(out))
    monkeypatch.setenv("ARM_HZ", "1000")
    run_node(monkeypatch, viewer.main, viewer_events())
    rows = rrd_rows(out)
    assert rows["/world/arm"] == rows["/force/measured"] == 20 and rows["/world/camera/rgb"] == 1
    assert not list(tmp_path.glob("*.partial"))


def test_a_viewer_that_dies_leaves_no_rrd_by_the_final_name(monkeypatch, tmp_path):
    from tuina.nodes import viewer

    from tuina import session_view

    out = tmp_path / "live.rrd"
    monkeypatch.setenv("RRD_FILE", str(out))
    shown = {"n": 0}
    original = session_view.SessionView.show

    def dies(self, *args):
        shown["n"] += 1
        if shown["n"] == 10:
            raise RuntimeError("killed")
        original(self, *args)

    monkeypatch.setattr(session_view.SessionView, "show", dies)
    with pytest.raises(RuntimeError):
        run_node(monkeypatch, viewer.main, viewer_events())
    assert not out.exists() and (tmp_path / "live.rrd.partial").exists()


def test_the_viewer_refuses_a_missing_folder_in_one_line(monkeypatch, tmp_path, capsys):
    from tuina.nodes import viewer

    monkeypatch.setenv("RRD_FILE", str(tmp_path / "nowhere" / "a.rrd"))
    with pytest.raises(SystemExit):
        run_node(monkeypatch, viewer.main, [])
    err = capsys.readouterr()
    lines = (err.out + err.err).strip().splitlines()
    assert len(lines) == 1 and "no folder" in lines[0] and "RRD_FILE" in lines[0]
