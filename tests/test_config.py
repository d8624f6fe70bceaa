import subprocess
import sys
from pathlib import Path

import pytest

from tuina.config import ConfigError, Param, load, table

PARAMS = [
    Param("FORCE_N", "float", 6.0, "N", "force", low=0.5, high=15),
    Param("MODE", "choice", "a", "-", "mode", choices=("a", "b")),
    Param("XYZ", "floats", [0.0, 0.0, 0.0], "m", "point", length=3),
    Param("ON", "bool", False, "-", "switch"),
]


def test_defaults_and_parsing():
    cfg = load("n", PARAMS, {"FORCE_N": "7.5", "MODE": "b", "XYZ": "1,2,3", "ON": "true"})
    assert cfg == {"FORCE_N": 7.5, "MODE": "b", "XYZ": [1.0, 2.0, 3.0], "ON": True}
    assert load("n", PARAMS, {})["FORCE_N"] == 6.0


@pytest.mark.parametrize("env, key", [
    ({"FORCE_N": "abc"}, "FORCE_N"), ({"FORCE_N": "40"}, "FORCE_N"),
    ({"FORCE_N": "nan"}, "FORCE_N"), ({"MODE": "c"}, "MODE"), ({"XYZ": "1,2"}, "XYZ"),
    ({"ON": "maybe"}, "ON"),
])
def test_bad_values_give_one_line_naming_the_key(env, key):
    with pytest.raises(ConfigError) as err:
        load("planner", PARAMS, env)
    message = str(err.value)
    assert "\n" not in message and key in message and message.startswith("planner:")


def test_table_lists_every_key():
    text = table(PARAMS)
    assert all(f"`{p.key}`" in text for p in PARAMS)


def test_reference_tables_match_the_code():
    from pathlib import Path

    from tuina.cli import contract_table, nodes_doc

    reference = (Path(__file__).resolve().parents[1] / "docs" / "reference.md").read_text()
    assert contract_table() in reference
    assert nodes_doc() in reference
    assert "``" not in nodes_doc()  # Markdown, not reStructuredText, on the terminal too


def test_every_figure_of_a_session_summary_is_defined_in_the_docs_once():
    import re

    from tuina.operators.session import SessionLimits, SessionLog, summarize

    page = (Path(__file__).resolve().parents[1] / "docs" / "session-summary.md").read_text()
    defined = [key for row in page.splitlines() if row.startswith("| `")
               for key in re.findall(r"`([a-z_0-9]+)`", row.split(" | ")[0])]
    assert len(defined) == len(set(defined))
    summary = {**summarize(SessionLog(), 1.0, SessionLimits()), "session": "", "target": ""}
    assert set(summary) - {"session"} == set(defined)


@pytest.mark.parametrize("graph", sorted((Path(__file__).resolve().parents[1] / "dataflows")
                                         .glob("*.yml")), ids=lambda p: p.name)
def test_every_graph_passes_dora_validate(graph):
    dora = Path(sys.executable).parent / "dora"
    proc = subprocess.run([str(dora), "validate", str(graph)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_misspelt_input_fails_dora_validate(tmp_path):
    graph = tmp_path / "bad.yml"
    graph.write_text("nodes:\n  - id: a\n    path: a.py\n    outputs: [out]\n"
                     "  - id: b\n    path: b.py\n    inputs:\n      inp: a/outt\n")
    dora = Path(sys.executable).parent / "dora"
    proc = subprocess.run([str(dora), "validate", str(graph)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "wiring" in proc.stdout + proc.stderr


def test_relative_paths_resolve_against_tuina_root_when_it_is_set():
    from tuina.config import Param, load

    params = [Param("EXTRINSICS_FILE", "path", "", "-", ""),
              Param("RECORDINGS_DIR", "path", "recordings", "-", "")]
    assert load("n", params, {"EXTRINSICS_FILE": "../calibration/c.json"}) == {
        "EXTRINSICS_FILE": "../calibration/c.json", "RECORDINGS_DIR": "recordings"}
    root = {"TUINA_ROOT": "/srv/tuina/dataflows"}
    assert load("n", params, {**root, "EXTRINSICS_FILE": "../calibration/c.json"}) == {
        "EXTRINSICS_FILE": "/srv/tuina/calibration/c.json",
        "RECORDINGS_DIR": "/srv/tuina/dataflows/recordings"}
    assert load("n", params, {**root, "EXTRINSICS_FILE": "/etc/c.json"})["EXTRINSICS_FILE"] \
        == "/etc/c.json"


# --- one rig per graph ----------------------------------------------------------------------

DATAFLOWS = Path(__file__).resolve().parents[1] / "dataflows"


@pytest.mark.parametrize("graph", sorted(p.name for p in DATAFLOWS.glob("*.yml")))
def test_every_graph_reads_one_rig_from_one_file(graph):
    from tuina.settings import graph_problems

    assert graph_problems(DATAFLOWS / graph) == []


def test_a_node_reads_its_rig_keys_from_the_rig_file_only(tmp_path):
    from tuina.config import RIG_PARAM

    rig = tmp_path / "rigs" / "arm.yml"
    rig.parent.mkdir()
    rig.write_text("TOOL_LENGTH_M: 0.05\nFORCE_CAP_N: 12.0\n")
    params = [RIG_PARAM, Param("TOOL_LENGTH_M", "float", 0.0466, "m", ""),
              Param("KP", "float", 0.01, "-", "")]
    root = {"TUINA_ROOT": str(tmp_path)}
    assert load("planner", params, {**root, "RIG": "rigs/arm.yml"})["TOOL_LENGTH_M"] == 0.05
    with pytest.raises(ConfigError, match="TOOL_LENGTH_M is set in the node's env: block and "
                                          "by the rig rigs/arm.yml"):
        load("planner", params, {**root, "RIG": "rigs/arm.yml", "TOOL_LENGTH_M": "0.04"})
    with pytest.raises(ConfigError, match="no rig file at .*nowhere.yml; RIG is relative"):
        load("planner", params, {**root, "RIG": "rigs/nowhere.yml"})
    rig.write_text("TOOL_LENGTH_M: 0.05\nKP: 0.02\n")
    with pytest.raises(ConfigError, match="KP is not a rig key"):
        load("planner", params, {**root, "RIG": "rigs/arm.yml"})


def test_a_graph_whose_nodes_disagree_on_the_rig_is_named_and_not_run(tmp_path):
    import yaml

    from tuina.settings import graph_problems

    spec = yaml.safe_load((DATAFLOWS / "sim.yml").read_text())
    planner = next(n for n in spec["nodes"] if n["id"] == "planner")
    del planner["env"]["RIG"]
    planner["env"]["TOOL_LENGTH_M"] = 0.05  # another tool than the rig's
    graph = DATAFLOWS / ".disagreeing.yml"  # beside the rigs it names
    try:
        graph.write_text(yaml.safe_dump(spec))
        problems = graph_problems(graph)
        assert any(p.startswith("the nodes with rig keys must all name one rig file")
                   and "planner (none)" in p for p in problems)
        assert any(p.startswith("the nodes disagree on TOOL_LENGTH_M: ") and "planner 0.05"
                   in p and "force-controller 0.0466" in p for p in problems)
        tuina = Path(sys.executable).parent / "tuina"
        proc = subprocess.run([tuina, "run", str(graph)], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.startswith("tuina run: error: ") and "TOOL_LENGTH_M" in proc.stderr
    finally:
        graph.unlink(missing_ok=True)


def test_a_bad_value_in_any_node_is_one_line_before_anything_starts(tmp_path):
    import yaml

    spec = yaml.safe_load((DATAFLOWS / "sim.yml").read_text())
    camera = next(n for n in spec["nodes"] if n["id"] == "camera")
    camera["env"]["SEED"] = "tomorrow"
    graph = DATAFLOWS / ".bad-value.yml"
    try:
        graph.write_text(yaml.safe_dump(spec))
        tuina = Path(sys.executable).parent / "tuina"
        for command in (["run", str(graph)], ["record", str(graph), "-o", str(tmp_path / "r")]):
            proc = subprocess.run([tuina, *command], capture_output=True, text=True, timeout=60)
            assert proc.returncode == 2 and proc.stdout == "", proc.stderr
            assert proc.stderr.count("\n") == 1 and "camera: env SEED='tomorrow' is invalid" \
                in proc.stderr, proc.stderr
        assert not (tmp_path / "r").exists()  # nothing recorded, nothing half-written
    finally:
        graph.unlink(missing_ok=True)


def test_a_graph_copied_elsewhere_keeps_its_rig_through_tuina_root(tmp_path):
    import yaml

    from tuina.evaluation.sessions import relocated
    from tuina.settings import graph_problems

    spec = relocated(yaml.safe_load((DATAFLOWS / "sim.yml").read_text()), DATAFLOWS / "sim.yml")
    (tmp_path / "sim.yml").write_text(yaml.safe_dump(spec))
    assert graph_problems(tmp_path / "sim.yml") == []
    bare = yaml.safe_load((DATAFLOWS / "sim.yml").read_text())
    (tmp_path / "bare.yml").write_text(yaml.safe_dump(bare))
    problems = graph_problems(tmp_path / "bare.yml")
    assert problems[0] == ("world, console, grounding, pose-fit, icp-tracker, planner, "
                           "force-controller, robot, session: env RIG='rigs/fr3.yml': no rig "
                           "file at "
                           f"{tmp_path / 'rigs' / 'fr3.yml'}; RIG is relative to the graph's "
                           "folder (e.g. RIG: rigs/fr3.yml), or give an absolute path")
