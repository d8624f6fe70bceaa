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
