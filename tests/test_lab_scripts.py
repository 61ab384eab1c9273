"""The lab scripts that numbers in docs/quickstart-lab.md come from still run (a few steps)."""

from __future__ import annotations

import importlib.util
import json
import random
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


def test_scene_as_text_trains_on_captions_and_scores_held_out_scenes(synth_train, tmp_path, capsys):
    data = synth_train(40)
    lab = _load("lab_scene_as_text")
    out = tmp_path / "lab"
    scores = lab.main(["--data", str(data), "--out", str(out), "--steps", "2", "--batch-size", "4",
                       "--held-out", "8", "--score-items", "30"])
    # No image anywhere: every prompt holds its scene's caption instead.
    captions = {json.loads(line)["caption"] for line in (data / "train" / "pt.jsonl").read_text().splitlines()}
    for line in (out / "data" / "train" / "sft.jsonl").read_text().splitlines():
        rec = json.loads(line)
        assert "<image>" not in rec["conversations"][0]["value"] and "image" not in rec
        assert any(rec["conversations"][0]["value"].startswith(c) for c in captions)
    held = [json.loads(line)["id"].split("-")[0] for line in (out / "data" / "heldout.jsonl").read_text().splitlines()]
    trained = [json.loads(line)["id"].split("-")[0] for line in (out / "data" / "train" / "sft.jsonl").read_text().splitlines()]
    assert held and not set(held) & set(trained)
    assert scores and all(0.0 <= v <= 100.0 for v in scores.values())
    assert json.loads((out / "results.json").read_text())["teacher_forced_accuracy"] == scores
    assert "%" in capsys.readouterr().out


def test_scene_as_text_refuses_to_hold_out_every_scene(synth_train, tmp_path):
    lab = _load("lab_scene_as_text")
    with pytest.raises(SystemExit, match="leaves none to train on"):
        lab.main(["--data", str(synth_train(40)), "--out", str(tmp_path / "x"), "--held-out", "40"])


def test_scene_as_text_transfer_runs_the_quickstart_stages_from_the_text_model(tmp_path):
    from aki.data.synth import generate

    data = tmp_path / "data"
    generate(data, n_train=30, n_test=6, seed=0)
    lab = _load("lab_scene_as_text")
    out = tmp_path / "lab"
    lab.main(["--data", str(data), "--out", str(out), "--steps", "2", "--batch-size", "4", "--held-out", "5",
              "--score-items", "10", "--transfer", "causal,mma", "--transfer-steps", "2", "2"])
    results = json.loads((out / "results.json").read_text())
    assert set(results["transfer"]) == {"causal", "mma"}
    for scores in results["transfer"].values():
        assert set(scores["cvbench"]) >= {"Count", "Relation", "Depth"} and "adversarial" in scores["pope_f1"]
    # Pre-training started from the text-trained model (its config records where it started).
    import yaml

    pt_config = yaml.safe_load((out / "vlm" / "pt" / "config.yaml").read_text())
    assert pt_config["init"]["from_dir"] == str(out / "run" / "final")


def test_lookup_speed_questions_are_answered_by_their_caption():
    lab = _load("lab_lookup_speed")
    questions, rng = lab.Questions((3, 7)), random.Random(0)
    for _ in range(50):
        prompt, answer = questions.item(rng, "where")
        name = prompt.split("Where is the ")[1].split("?")[0]
        assert f"{name} at {answer}" in prompt
        prompt, answer = questions.item(rng, "relcot")
        first, second = prompt.split("Is the ")[1].split("?")[0].split(" on the left or on the right side of the ")
        x_first, x_second = (int(prompt.split(f"{n} at x ")[1].split()[0]) for n in (first, second))
        assert answer == f"x {x_first} x {x_second} {'left' if x_first < x_second else 'right'}"
        assert prompt.endswith(lab.WORKED)
    questions.small = True
    assert all(2 <= len(questions.scene(rng)) <= 3 for _ in range(20))


def test_lookup_speed_scores_every_kind_and_repeats_itself(capsys):
    lab = _load("lab_lookup_speed")
    argv = ["--tasks", ",".join(lab.TASKS), "--steps", "4", "--eval-every", "2", "--batch-size", "4",
            "--eval-items", "6", "--curriculum", "2", "--layers", "1", "--hidden", "32", "--heads", "2", "--kv-heads", "1"]
    rows = lab.main(argv)
    assert [r["step"] for r in rows] == [2, 4]
    assert all(0.0 <= r[t] <= 100.0 for r in rows for t in lab.TASKS)
    assert [{k: v for k, v in r.items() if k != "s"} for r in lab.main(argv)] == \
        [{k: v for k, v in r.items() if k != "s"} for r in rows]
    assert '"where1"' in capsys.readouterr().out


def test_lookup_speed_trains_the_first_kinds_first_and_scores_both_sets(monkeypatch):
    lab = _load("lab_lookup_speed")
    drawn = []
    item = lab.Questions.item

    def spy(self, rng, task):
        drawn.append(task)
        return item(self, rng, task)

    monkeypatch.setattr(lab.Questions, "item", spy)
    rows = lab.main(["--first-tasks", "where", "--first-steps", "2", "--tasks", "rel", "--steps", "4",
                     "--eval-every", "4", "--batch-size", "3", "--eval-items", "2", "--layers", "1", "--hidden", "32",
                     "--heads", "2", "--kv-heads", "1"])
    assert drawn[4:] == ["where"] * 6 + ["rel"] * 6  # 2 held-out items per kind, then 2 + 2 batches of 3
    assert {"where", "rel"} <= set(rows[0])


@pytest.mark.parametrize("argv, problem", [(["--tasks", "where,colour"], "--tasks"), (["--nobj", "1,4"], "--nobj"),
                                           (["--nobj", "5"], "two whole numbers"),
                                           (["--first-tasks", "rel"], "go together"),
                                           (["--first-tasks", "what", "--first-steps", "3"], "--first-tasks")])
def test_lookup_speed_refuses_unknown_kinds_and_one_object_scenes(argv, problem, capsys):
    with pytest.raises(SystemExit):
        _load("lab_lookup_speed").parse_args(argv)
    assert problem in capsys.readouterr().err
