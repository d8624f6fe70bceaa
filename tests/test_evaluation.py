"""What the evaluations share: seeds and a figure's spread over them."""

import math

import pytest

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
