"""`aki reproduce` options (--modes a,b / --seeds N, with the old --mode / --seed kept) and the
verdict rule: MMA − causal against the larger seed standard deviation, written in words."""

from __future__ import annotations

import json
import statistics

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from aki.cli.main import app
from aki.cli.quickstart import reproduce_choice
from aki.experiments.report import summarise
from aki.experiments.verdict import compare_column, compare_rules, verdict_text

DEFAULT = ("causal", "mma", "dot")


def test_modes_and_seeds_forms():
    assert reproduce_choice("causal,mma", 3, None, None, DEFAULT) == (["causal", "mma"], [0, 1, 2])
    assert reproduce_choice(" causal , mma ", None, None, None, DEFAULT) == (["causal", "mma"], [0, 1, 2])
    assert reproduce_choice(None, None, ["mma"], [4, 7], DEFAULT) == (["mma"], [4, 7])
    assert reproduce_choice(None, 1, None, None, DEFAULT) == (list(DEFAULT), [0])
    for bad in [("causal,mma", None, ["dot"], None), (None, 2, None, [0]), ("causal,,mma", None, None, None),
                ("mma,mma", None, None, None), (None, None, None, [1, 1])]:
        with pytest.raises(typer.BadParameter):
            reproduce_choice(*bad, DEFAULT)


def _cells(values_a, values_b):
    table = summarise({"mma": {i: {"pope": {"overall": {"f1": v}}} for i, v in enumerate(values_a)},
                       "causal": {i: {"pope": {"overall": {"f1": v}}} for i, v in enumerate(values_b)}})
    return table["mma"]["POPE F1"], table["causal"]["POPE F1"], table


def test_verdict_cases_by_hand():
    a, b, _ = _cells([80, 82, 84], [70, 71, 72])  # d = +11, spread = 2
    v = compare_column(a, b, "POPE F1")
    assert v.outcome == "better" and v.difference == pytest.approx(11) and v.spread == pytest.approx(2)
    a, b, _ = _cells([70, 80, 90], [75, 76, 77])  # d = +4 < spread 10
    assert compare_column(a, b, "POPE F1").outcome == "within"
    a, b, _ = _cells([60, 61, 62], [70, 71, 72])
    assert compare_column(a, b, "POPE F1").outcome == "worse"
    a, b, _ = _cells([60], [70])
    assert compare_column(a, b, "POPE F1").outcome == "no spread"


@given(st.lists(st.floats(0, 100), min_size=2, max_size=5), st.lists(st.floats(0, 100), min_size=2, max_size=5))
def test_verdict_matches_its_definition(xs, ys):
    a, b, _ = _cells(xs, ys)
    v = compare_column(a, b, "POPE F1")
    d = statistics.fmean(xs) - statistics.fmean(ys)
    s = max(statistics.stdev(xs), statistics.stdev(ys))
    assert v.difference == pytest.approx(d, abs=1e-9) and v.spread == pytest.approx(s, abs=1e-9)
    if abs(v.difference) <= v.spread:
        assert v.outcome == "within"
    else:
        assert v.outcome == ("better" if v.difference > 0 else "worse")


def test_verdict_in_words():
    _, _, table = _cells([80, 82, 84], [70, 71, 72])
    text = verdict_text(compare_rules(table))
    assert text.startswith("MMA − causal: MMA is ahead by more than the seed spread on POPE F1")
    assert "+11.0 points, seed spread 2.0 -> better" in text
    _, _, table = _cells([70, 80, 90], [75, 76, 77])
    assert "does not exceed the seed spread in any column" in verdict_text(compare_rules(table))
    _, _, table = _cells([70], [75])
    assert "no seed spread" in verdict_text(compare_rules(table))


def test_reproduce_fast_two_seeds_prints_mean_std_and_verdict(tmp_path):
    result = CliRunner().invoke(app, ["reproduce", "--out", str(tmp_path), "--fast", "--modes", "causal,mma",
                                      "--seeds", "2"])
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["seeds"] == [0, 1]
    assert set(payload["per_seed"]["mma"]) == {"0", "1"}
    assert " ± " in result.output and "MMA − causal" in result.output
    assert payload["verdict"] in result.output
