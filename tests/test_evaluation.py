"""What the evaluations share: seeds and a figure's spread over them."""

import math
from pathlib import Path

import pytest
import yaml

from tuina.evaluation.seeds import merged, over_seeds, seed_overrides, spread


def test_a_figure_over_seeds_has_its_mean_spread_and_worst_and_counts_the_missing():
    s = spread([0.2, 0.4, float("nan"), 0.3])
    assert s["mean"] == pytest.approx(0.3) and s["worst"] == 0.4
    assert s["std"] == pytest.approx(math.sqrt(2 / 3) * 0.1) and (s["n"], s["missing"]) == (3, 1)
    assert spread([99.0, 97.5], worst="min")["worst"] == 97.5
    assert spread([None, float("nan")])["n"] == 0
    runs = [{"rms": 0.2, "hz": 99.0}, {"rms": 0.4, "hz": 97.0}]
    out = over_seeds(runs, {"rms": "max", "hz": "min"})
    assert out["rms"] == pytest.approx(0.3) and out["spread"]["hz"]["worst"] == 97.0


def test_a_seed_moves_the_body_and_redraws_every_sensor_and_the_overrides_merge():
    zero, one = seed_overrides(0), seed_overrides(1)
    assert zero["world"]["BODY_OFFSET_SEED"] != one["world"]["BODY_OFFSET_SEED"]
    assert zero["world"]["WRENCH_SEED"] != one["world"]["WRENCH_SEED"]
    assert zero["camera"]["SEED"] != one["camera"]["SEED"]
    both = merged(one, {"world": {"FAULT": "wrench_nan"}, "session": {"TIMEOUT_S": 90}})
    assert both["world"] == {**one["world"], "FAULT": "wrench_nan"}
    assert both["session"] == {"TIMEOUT_S": 90}


def _graph() -> Path:
    return Path(__file__).resolve().parents[1] / "dataflows" / "sim.yml"


def test_an_override_for_a_node_or_key_the_graph_lacks_is_refused_with_one_line(tmp_path):
    from tuina.evaluation.sessions import OverrideRefused, session_graph

    with pytest.raises(OverrideRefused, match="node 'operator', which the graph lacks"):
        session_graph(_graph(), {"operator": {"INSTRUCTION": "press Zusanli"}}, tmp_path, "a")
    with pytest.raises(OverrideRefused, match="sets INSTRUCTIONS on node 'console'"):
        session_graph(_graph(), {"console": {"INSTRUCTIONS": "press Zusanli"}}, tmp_path, "b")
    assert not list(tmp_path.iterdir())  # nothing written for a refused graph
    path = session_graph(_graph(), {"console": {"INSTRUCTION": "press Hegu"}}, tmp_path, "c")
    console = next(n for n in yaml.safe_load(path.read_text())["nodes"] if n["id"] == "console")
    assert console["env"]["INSTRUCTION"] == "press Hegu"


def test_every_evaluation_override_applies_to_the_sim_graph():
    from tuina.operators.phantom import POINT_SIDES

    from tuina.evaluation import force, safety, tracking
    from tuina.evaluation.coverage import point_overrides
    from tuina.evaluation.seeds import posture_overrides
    from tuina.evaluation.sessions import unapplied_override

    spec = yaml.safe_load(_graph().read_text())
    cases = [point_overrides(p, 1, body) for p in POINT_SIDES for body in ("phantom", "person")]
    cases += [posture_overrides(p) for p in ("supine", "prone")]
    cases += [force.scenario_overrides(name, 2, body) for name in force.SCENARIOS
              for body in ("phantom", "person")]
    cases += [tracking.scenario_overrides(s) for s in tracking.SCENARIOS]
    cases += [merged(seed_overrides(0), o) for o, _ in safety.SCENARIOS.values()]
    for case in cases:
        assert unapplied_override(spec, case) is None, case


def test_coverage_asks_each_session_for_its_own_point_and_a_crash_is_no_refusal(tmp_path):
    from tuina.operators.phantom import POINT_SIDES

    from tuina.evaluation.coverage import SessionFailed, run

    asked = []

    def session(graph, overrides, folder, name, label):
        asked.append(overrides["console"]["INSTRUCTION"])
        if name.startswith("GB34-R"):
            raise RuntimeError("the GB34-R-0 session wrote no summary: SIGSEGV")
        code = name.rsplit("-", 1)[0]
        return {"contact_s": 2.0, "acupoint_error_mm": 2.0, "force_mean_n": 6.0,
                "force_target_n": 6.0, "normal_error_deg": 3.0, "target": code,
                "problems": []}

    out = run(_graph(), lambda line: None, 1, ["ST36", "BL23"], session=session)
    codes = [p.code for p in POINT_SIDES if p.code in ("ST36", "BL23")]
    assert [r["code"] for r in out["rows"]] == codes and out["pressed"] == len(codes)
    assert asked == ["press Zusanli on the left with moderate pressure",
                     "press Shenshu on the left with moderate pressure"]
    on_people = []
    run(_graph(), lambda line: None, 2, ["BL23"], body="person",
        session=lambda g, overrides, *rest: on_people.append(overrides["world"]) or
        session(g, overrides, *rest))
    assert [w["PERSON_SEED"] for w in on_people] == [0, 1]  # a person per seed
    assert {w["BODY"] for w in on_people} == {"person"}
    assert {w["BODY_POSTURE"] for w in on_people} == {"prone"}
    with pytest.raises(SessionFailed, match="GB34-R seed 0: .*wrote no summary"):
        run(_graph(), lambda line: None, 1, ["ST36", "GB34-R"], session=session)


def test_force_on_people_lies_each_seeds_person_in_the_scenarios_posture():
    from tuina.evaluation import force

    prone = force.scenario_overrides("prone press", 3, "person")
    assert prone["world"] == {**prone["world"], "BODY": "person", "PERSON_SEED": 3,
                              "BODY_POSTURE": "prone"}
    assert prone["grounding"]["BODY_MODEL"] == "anny"
    assert prone["grounding"]["BODY_POSTURE"] == "prone"
    press = force.scenario_overrides("press", 3, "person")
    assert press["world"]["BODY_POSTURE"] == "supine" and press["world"]["PERSON_SEED"] == 3
    # a person's right leg lies on the arm's side of the table, where the phantom's "left" does
    assert press["console"]["INSTRUCTION"] == "press Zusanli on the right with moderate pressure"
    assert force.scenario_overrides("press", 3)["console"]["INSTRUCTION"] == \
        "press Zusanli on the left with moderate pressure"
    phantom = force.scenario_overrides("moving", 3)
    assert phantom["world"]["BODY"] == "phantom" and "PERSON_SEED" not in phantom["world"]
    assert phantom["world"]["BODY_MOTION"] == "shift"  # the scenario's own survive the merge
    assert "BODY_MODEL" not in phantom["grounding"]
