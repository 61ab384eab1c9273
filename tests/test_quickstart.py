"""The quickstart, end to end in its short form (a few steps): data, tiny model, PT, SFT with
causal and MMA, evaluation, results table, and chatting with the result."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from aki.cli.main import app
from aki.experiments.modes import MODES, get_modes
from aki.experiments.report import COLUMNS, summarise, to_markdown
from aki.experiments.runner import REFERENCE_ROW


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    result = CliRunner().invoke(app, ["quickstart", "--out", str(out), "--fast"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_quickstart_writes_table_json_and_plot(quick_run):
    out, output = quick_run
    payload = json.loads((out / "results.json").read_text())
    assert set(payload["table"]) == {"causal", "mma", REFERENCE_ROW}
    for mode in ("causal", "mma"):
        scores = payload["per_seed"][mode]["0"]
        assert {"cvbench", "pope", "attributes"} <= set(scores)
        assert 0.0 <= scores["cvbench"]["overall"] <= 100.0
    md = (out / "results.md").read_text()
    assert MODES["mma"].label in md and MODES["causal"].label in md
    assert (out / "results.png").stat().st_size > 1000
    assert "aki chat" in output
    pictures = json.loads((out / "pictures" / "pictures.json").read_text())  # aki.analysis.pictures
    assert pictures["final_state_difference"]["causal"] == 0.0
    assert f"{out}/pictures/question_pair.png" in output


def test_quickstart_resumes_finished_runs(quick_run):
    out, _ = quick_run
    before = (out / "seed0" / "mma" / "eval" / "scores.json").read_text()
    result = CliRunner().invoke(app, ["quickstart", "--out", str(out), "--fast"])
    assert result.exit_code == 0, result.output
    assert "reusing" in result.output
    assert (out / "seed0" / "mma" / "eval" / "scores.json").read_text() == before


def test_chat_answers_about_an_image(quick_run):
    out, _ = quick_run
    image = sorted((out / "data" / "test" / "images").glob("*.png"))[0]
    result = CliRunner().invoke(app, ["chat", str(out / "seed0" / "mma" / "final"), "--image", str(image),
                                      "How many circles are there?", "--max-new-tokens", "4"])
    # a 3-step model may answer with whitespace only: chat then says so and exits 1 (issue 13)
    assert result.exit_code == 0 or "the model produced no answer" in result.stderr, result.output


def test_chat_names_a_missing_model_dir(tmp_path):
    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["chat", str(tmp_path / "nope"), "hi"])
    assert result.exit_code != 0
    assert "does not exist" in result.output


def test_summary_mean_and_std_over_seeds():
    results = {"mma": {0: {"cvbench": {"overall": 50.0}}, 1: {"cvbench": {"overall": 60.0}}}}
    table = summarise(results)
    cell = table["mma"]["CV-Bench overall"]
    assert cell["mean"] == pytest.approx(55.0)
    assert cell["std"] == pytest.approx(7.0710678, rel=1e-6)
    assert table["mma"]["POPE F1"]["mean"] is None
    md = to_markdown(table, [0, 1])
    assert "55.0 ± 7.1" in md and len(md.splitlines()[0].split("|")) == len(COLUMNS) + 3


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown mode"):
        get_modes(["mma", "bidirectional"])


def test_reproduce_runs_every_kind_of_mode(tmp_path):
    modes = ["reversed", "dot", "cca", "mixed", "mma", "mma@50"]
    args = ["reproduce", "--out", str(tmp_path), "--fast", "--seed", "0"]
    for m in modes:
        args += ["--mode", m]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "results.json").read_text())
    assert set(payload["table"]) == {*modes, REFERENCE_ROW}
    # shared pre-training: one run per (order, rule) pair, reused across modes
    pts = sorted(p.name for p in (tmp_path / "seed0").glob("pt-*"))
    assert pts == ["pt-IT-causal", "pt-IT-cca", "pt-TI-causal", "pt-dot-causal"]
    reversed_preds = (tmp_path / "seed0" / "reversed" / "eval" / "cvbench.predictions.jsonl").read_text()
    assert reversed_preds
    assert (tmp_path / "unlock_curve.png").exists()
    orders = {json.loads(line)["order"] for line in
              (tmp_path / "seed0" / "dot" / "metrics.jsonl").read_text().splitlines()}
    assert orders <= {"T&I", "I&T"}


def test_analyze_reports_attention_shares(quick_run):
    out, _ = quick_run
    result = CliRunner().invoke(app, ["analyze", str(out / "seed0" / "mma" / "final"), "--data", str(out / "data"),
                                      "--n", "4"])
    assert result.exit_code == 0, result.output
    assert "question" in result.output and "sensitivity" in result.output


def test_resume_refuses_other_settings(quick_run):
    out, _ = quick_run
    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["quickstart", "--out", str(out), "--fast",
                                                            "--sft-steps", "5"])
    assert result.exit_code == 2
    assert "other settings" in result.output and "sft_steps" in result.output


def test_resume_names_a_damaged_finished_run(quick_run):
    """A finished run whose weights were cut short is not reused silently (issue 13)."""
    out = quick_run[0]
    weights = out / "seed0" / "mma" / "final" / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[:1000])
    try:
        result = CliRunner().invoke(app, ["quickstart", "--out", str(out), "--fast"])
    finally:
        weights.write_bytes(whole)  # the other tests read this run
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert line.startswith("aki quickstart: error: the finished run") and "model.safetensors' is" in line and "cut short" in line
    assert f"Remove '{out / 'seed0' / 'mma'}'" in line


def test_quickstart_starts_from_the_shipped_decoder_or_a_random_one(quick_run, tmp_path):
    """By default the quickstart's decoder is the shipped one, tokenizer included;
    ``--random-language-model`` builds a random decoder with a tokenizer trained on the data, and a
    folder made one way is not resumed the other way."""
    from transformers import AutoTokenizer

    import aki.language

    shipped = aki.language.PRETRAINED_LANGUAGE_MODEL
    out = quick_run[0]
    assert json.loads((out / "settings.json").read_text())["language_model"] == str(shipped)
    vocab = AutoTokenizer.from_pretrained(out / "seed0" / "init").get_vocab()
    assert vocab == AutoTokenizer.from_pretrained(shipped).get_vocab()
    result = CliRunner().invoke(app, ["quickstart", "--out", str(tmp_path), "--fast", "--random-language-model"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "settings.json").read_text())["language_model"] is None
    assert AutoTokenizer.from_pretrained(tmp_path / "seed0" / "init").get_vocab() != vocab
    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["quickstart", "--out", str(tmp_path), "--fast"])
    assert result.exit_code == 2 and "language_model" in result.output
