"""``tuina run``'s terminal: the session as a person follows it, dora's records only in the
log."""

from pathlib import Path

from tuina.run import shown, summary_written

DORA_OUTPUT = [
    "\x1b[2m2026-11-30T12:41:05.1Z\x1b[0m \x1b[32m INFO\x1b[0m run_inner: dora_daemon: "
    "starting",
    '12:41:06 ERROR  estop-button: daemon failed to receive finished signal',
    '12:41:06 DEBUG  robot: daemon spawning node',
    '12:41:13 WARN   world: dora_node_api::node output `rgb`: 1037128 B -> zenoh direct '
    'path (dora-rs/dora#2742 diagnostic)',
    '12:41:16 WARN   grounding: dora_node_api::event_stream::scheduler Discarding event '
    'for input `depth` due to queue size limit',
    "12:41:16 stdout operator: operator: 'press Zusanli with moderate pressure'",
    '12:41:16 stdout grounding: grounding: ST36 (Zusanli) at px [434.1, 310.9], press at 6.0 N',
    '12:41:16 stdout planner: '
    '{"timestamp":"2026-11-30T12:41:16Z","level":"WARN","fields":{"message":"event '
    'channel full"}}',
    # a record of dora's landing in the middle of a node's line (both write to its stdout)
    '12:41:17 stdout planner: planner: ST36: 775 samples, 15.5 s{"timestamp":"2026-11-30T'
    '20:30:59.97Z","level":"WARN","fields":{"message":"dropped","input":"depth","drops":2},'
    '"target":"dora_node_api::event_stream"}',
    '12:41:20 stdout recorder: tuina-recorder: 7537 messages on 4 topics',
    '12:41:48 stdout session:   ok                   True',
    '12:41:49 stderr world: Traceback (most recent call last):',
    '12:41:49 stderr world:   File "x.py", line 1, in <module>',
    '12:41:49 stderr pose-fit: tuina-pose-fit: error: MIN_FITNESS: must be <= 1 (got 3); '
    'set it in the graph',
    '12:41:49 ERROR  planner: Could not initiate node from environment variable. For dynamic node',
    '12:41:50 INFO   [dora]: daemon dataflow finished on machine `01a2`',
]


def test_the_terminal_shows_the_nodes_lines_and_one_error_line_only():
    lines = [text for line in DORA_OUTPUT if (text := shown(line)) is not None]
    assert lines == [
        "12:41:16 operator: 'press Zusanli with moderate pressure'",
        "12:41:16 grounding: ST36 (Zusanli) at px [434.1, 310.9], press at 6.0 N",
        "12:41:17 planner: ST36: 775 samples, 15.5 s",
        "12:41:20 recorder: 7537 messages on 4 topics",
        "12:41:48 session:   ok                   True",
        "12:41:49 tuina-pose-fit: error: MIN_FITNESS: must be <= 1 (got 3); set it in the graph",
    ]


def test_the_log_goes_where_the_session_wrote_its_summary():
    line = "12:41:48 stdout session:   written to /srv/recordings/sim-1/summary.json\n"
    assert summary_written(line) == Path("/srv/recordings/sim-1/summary.json")
    assert summary_written("12:41:48 stdout session:   ok                   True") is None


def test_set_changes_a_nodes_setting_for_one_run_and_refuses_what_no_node_reads(tmp_path):
    import pytest
    import yaml

    from tuina.run import overridden_graph, parse_sets, run

    graph = Path(__file__).resolve().parents[1] / "dataflows" / "sim.yml"
    overrides = parse_sets(["world.BODY=person", "world.PERSON_SEED=3",
                            "grounding.BODY_MODEL=anny", "planner.PRESS_S=2.5"])
    assert overrides == {"world": {"BODY": "person", "PERSON_SEED": 3},
                         "grounding": {"BODY_MODEL": "anny"}, "planner": {"PRESS_S": 2.5}}
    out = overridden_graph(graph, tmp_path, overrides)
    nodes = {n["id"]: n for n in yaml.safe_load(out.read_text())["nodes"]}
    assert nodes["world"]["env"]["BODY"] == "person" and nodes["world"]["env"]["PERSON_SEED"] == 3
    assert nodes["planner"]["env"]["PRESS_S"] == 2.5
    # relative paths (the rig) still mean what they meant beside the graph
    assert nodes["planner"]["env"]["TUINA_ROOT"] == str(graph.parent)
    with pytest.raises(SystemExit, match="sets BODIES on node 'world', which does not read it"):
        overridden_graph(graph, tmp_path, parse_sets(["world.BODIES=person"]))
    with pytest.raises(ValueError, match="is not NODE.KEY=VALUE"):
        parse_sets(["BODY=person"])
    # the command line: one error line and no run for a malformed item
    assert run(str(graph), None, sets=["world.BODY"]) == 2
