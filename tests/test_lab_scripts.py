"""The lab scripts that numbers in docs/quickstart-lab.md come from still run (a few steps)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arch", ["encoder", "llama"])
def test_lookup_upper_bound_runs_and_reports_held_out_accuracy(synth_train, arch, capsys):
    data = synth_train(40)
    lines = (data / "train" / "sft.jsonl").read_text(encoding="utf-8").splitlines()
    n = sum(json.loads(line)["task"] == "Attribute/colour" for line in lines)
    lab = _load("lab_lookup_upper_bound")
    scores = lab.main(["--data", str(data), "--arch", arch, "--steps", "4", "--every", "2", "--batch-size", "4",
                       "--n-test", str(n // 3), "--filler", "2"])
    assert sorted(scores) == [2, 4]
    assert all(0.0 <= s <= 100.0 for s in scores.values())
    assert "held-out accuracy" in capsys.readouterr().out


def test_lookup_upper_bound_names_a_missing_model(synth_train):
    lab = _load("lab_lookup_upper_bound")
    with pytest.raises(SystemExit, match="needs --model"):
        lab.main(["--data", str(synth_train(40)), "--features", "resampler", "--steps", "1", "--n-test", "1"])
