"""Every bad input of the issue ends in one line naming the problem and the fix, a non-zero
exit, and nothing changed on disk (issue 13)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aki.cli.errors import DEBUG_ENV
from aki.cli.main import app


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setenv(DEBUG_ENV, "")


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(result, command: str) -> str:
    """The failure's only stderr line (checked), for matching."""
    assert result.exit_code != 0, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"aki {command}: error: ") and "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A saved tiny model, broken copies of it, a data folder and an unfinished run."""
    from aki.data.synth import generate
    from aki.testing import tiny_model

    root = tmp_path_factory.mktemp("folders")
    model, processor = tiny_model("llama")
    good = root / "model"
    model.save_pretrained(good)
    processor.save_pretrained(good)
    truncated = root / "truncated"
    shutil.copytree(good, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    bad_config = root / "bad-config"
    shutil.copytree(good, bad_config)
    (bad_config / "config.json").write_text('{"model_type": "aki", ')
    no_weights = root / "no-weights"
    shutil.copytree(good, no_weights)
    (no_weights / "model.safetensors").unlink()
    data = root / "data"
    generate(data, n_train=4, n_test=4, seed=0)
    unfinished = root / "unfinished"
    (unfinished / "checkpoints" / "step-00000002").mkdir(parents=True)
    (unfinished / "metrics.jsonl").write_text("")
    return {"good": good, "truncated": truncated, "bad_config": bad_config, "no_weights": no_weights,
            "data": data, "unfinished": unfinished, "missing": root / "no-such-model", "root": root}


CASES = {
    # folder key -> (what the line must say, the fix it must name)
    "missing": ("no-such-model' (MODEL_DIR)", "does not exist", "aki train"),
    "data": ("data' (MODEL_DIR) is a data folder", "metadata.json", "final/"),
    "truncated": ("truncated/model.safetensors' is truncated", "expected from its header", "export the model again"),
    "bad_config": ("bad-config/config.json' is not valid JSON", "JSON", "export the model again"),
    "no_weights": ("no-weights/model.safetensors' is missing", "no weights", "copy"),
    "unfinished": ("unfinished' (MODEL_DIR) is a training run without a final model", "not finished", "--resume"),
}


def _command(name: str, folder: Path, data: Path) -> list[str]:
    return {"chat": ["chat", str(folder), "What is this?"],
            "analyze": ["analyze", str(folder), "--data", str(data)],
            "eval": ["eval", str(folder), "--bench", "synth", "--data-root", str(data)]}[name]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["chat", "analyze", "eval"])
def test_bad_model_folders_are_named_with_the_fix(folders, command, case):
    before = snapshot(folders["root"])
    result = CliRunner().invoke(app, _command(command, folders[case], folders["data"]))
    line = one_error_line(result, command)
    for part in CASES[case]:
        assert part in line, line
    assert snapshot(folders["root"]) == before  # nothing written (eval's output folder included)


@pytest.mark.parametrize("command", ["chat", "analyze", "eval"])
def test_hub_id_while_offline_fails_fast_naming_it(folders, command, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    result = CliRunner().invoke(app, _command(command, Path("aki-test/not-a-real-repo"), folders["data"]))
    line = one_error_line(result, command)
    assert time.perf_counter() - start < 10
    assert "'aki-test/not-a-real-repo' (MODEL_DIR)" in line and "offline" in line and "HF cache" in line


def _train_config(folders, tmp_path, init: dict) -> Path:
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "out"), "stage": "sft", "max_steps": 1, "init": init, "batch_size": 2,
        "data": {"sources": [{"format": "sft_llava", "path": str(folders["data"] / "train" / "sft.jsonl")}]},
        "progress": False, "tensorboard": False}))
    return config


@pytest.mark.parametrize("init, expected", [
    ({"from_dir": "MISSING"}, ["(init.from_dir)", "does not exist", "fix init.from_dir"]),
    ({"from_dir": "DATA"}, ["(init.from_dir) is a data folder"]),
    ({"from_dir": "TRUNCATED"}, ["model.safetensors' is truncated"]),
    ({"vision": "aki-test/no-tower", "llm": "aki-test/no-llm"},
     ["the vision tower 'aki-test/no-tower' (init.vision)", "offline", "set init.vision to a local folder"]),
    ({"vision": "GOOD", "llm": "aki-test/no-llm"}, ["'aki-test/no-llm' (init.llm)", "set init.llm"]),
])
def test_train_names_the_init_key(folders, tmp_path, monkeypatch, init, expected):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    names = {"MISSING": folders["missing"], "DATA": folders["data"], "TRUNCATED": folders["truncated"],
             "GOOD": folders["good"]}
    init = {k: str(names.get(v, v)) for k, v in init.items()}
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["train", str(_train_config(folders, tmp_path, init))])
    line = one_error_line(result, "train")
    assert time.perf_counter() - start < 20
    for part in expected:
        assert part in line, line
    assert not (tmp_path / "out").exists()


def test_train_config_file_missing(tmp_path):
    line = one_error_line(CliRunner().invoke(app, ["train", str(tmp_path / "nope.yaml")]), "train")
    assert "nope.yaml' does not exist" in line and "configs/" in line


# ---------------------------------------------------------------------- chat


def test_chat_refuses_an_empty_question(folders):
    line = one_error_line(CliRunner().invoke(app, ["chat", str(folders["good"]), "   "]), "chat")
    assert "the question is empty" in line and "What is in the image?" in line


def test_chat_checks_the_context_length(folders):
    long = "word " * 600  # the tiny model reads 512 positions
    line = one_error_line(CliRunner().invoke(app, ["chat", str(folders["good"]), long]), "chat")
    assert "but the model reads at most 512" in line and "shorten the question" in line
    line = one_error_line(CliRunner().invoke(app, ["chat", str(folders["good"]), "Hi?", "--max-new-tokens", "600"]),
                          "chat")
    assert "context of 512 tokens" in line and "pass --max-new-tokens" in line


def test_chat_options_and_images_are_checked(folders, tmp_path):
    good = str(folders["good"])
    line = one_error_line(CliRunner().invoke(app, ["chat", good, "Hi?", "--dtype", "int8"]), "chat")
    assert "--dtype 'int8'" in line and "float32, bfloat16, float16" in line
    line = one_error_line(CliRunner().invoke(app, ["chat", good, "Hi?", "--device", "cuda:7"]), "chat")
    assert "--device 'cuda:7'" in line
    line = one_error_line(CliRunner().invoke(app, ["chat", good, "Hi?", "--image", str(tmp_path / "no.png")]), "chat")
    assert "no.png' does not exist" in line


def test_chat_answers_with_device_and_dtype(folders):
    image = sorted((folders["data"] / "test" / "images").glob("*.png"))[0]
    result = CliRunner().invoke(app, ["chat", str(folders["good"]), "What is this?", "--image", str(image),
                                      "--max-new-tokens", "4", "--device", "cpu", "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()


def test_chat_says_when_the_model_produced_nothing(folders, tmp_path):
    """A model whose final norm is zero gives equal logits everywhere, so greedy decoding picks
    id 0, a special token: the streamed answer is empty."""
    import torch

    from aki.model import AkiForConditionalGeneration

    mute = tmp_path / "mute"
    shutil.copytree(folders["good"], mute)
    model = AkiForConditionalGeneration.from_pretrained(mute)
    with torch.no_grad():
        model.language_model.model.norm.weight.zero_()
    model.save_pretrained(mute)
    line = one_error_line(CliRunner().invoke(app, ["chat", str(mute), "Hi?", "--max-new-tokens", "3"]), "chat")
    assert "the model produced no answer" in line and "special tokens only" in line and "--temperature" in line


# ---------------------------------------------------------------------- convert-official


def test_convert_official_names_bad_sources_and_keeps_dst(folders, tmp_path):
    dst = tmp_path / "dst"
    line = one_error_line(CliRunner().invoke(app, ["convert-official", str(folders["missing"]), str(dst)]),
                          "convert-official")
    assert "no-such-model' does not exist" in line and "release's folder" in line
    line = one_error_line(CliRunner().invoke(app, ["convert-official", str(folders["data"]), str(dst)]),
                          "convert-official")
    assert "no *.safetensors" in line and "release's folder" in line
    line = one_error_line(CliRunner().invoke(app, ["convert-official", str(folders["good"]), str(dst)]),
                          "convert-official")
    assert "already an aki model" in line and "nothing to convert" in line
    assert not dst.exists()
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    before = snapshot(dst)
    line = one_error_line(CliRunner().invoke(app, ["convert-official", str(folders["good"]), str(dst)]),
                          "convert-official")
    assert "already holds files" in line and "--overwrite" in line
    assert snapshot(dst) == before


def test_config_json_of_another_model_type_is_named(folders, tmp_path):
    other = tmp_path / "bert"
    shutil.copytree(folders["good"], other)
    config = json.loads((other / "config.json").read_text())
    config["model_type"] = "bert"
    (other / "config.json").write_text(json.dumps(config))
    line = one_error_line(CliRunner().invoke(app, ["chat", str(other), "Hi?"]), "chat")
    assert "holds a bert model, not an aki model" in line and "init.vision / init.llm" in line


# ---------------------------------------------------------------------- masks


def test_masks_show_refuses_unknown_or_undrawable_rules(tmp_path):
    plot = tmp_path / "m.png"
    line = one_error_line(CliRunner().invoke(app, ["masks", "show", "-r", "foo", "--plot", str(plot)]), "masks show")
    assert "unknown attention rule 'foo'" in line and "mma" in line
    result = CliRunner().invoke(app, ["masks", "show", "-r", "mma", "-r", "cca", "--layout", "TT III QQ AA",
                                      "--plot", str(plot)])
    line = one_error_line(result, "masks show")
    assert result.exit_code == 2 and "cannot draw 1 rule(s)" in line and "grid" in line
    assert not plot.exists() and result.stdout == ""  # nothing printed or written for a refused command


def test_masks_plot_has_a_legend_axis_titles_and_leak_counts(tmp_path):
    import torch

    from aki.cli.masks import parse_layout, plot_masks
    from aki.masks import build_attention_mask

    segments = parse_layout("TT IIII QQ AA")
    masks = {"mma": build_attention_mask(segments, "mma"), "causal": build_attention_mask(segments, "causal")}
    masks["leaky"] = torch.ones_like(masks["causal"])
    fig = plot_masks(masks, {"mma": 0, "causal": 0, "leaky": 3}, "TTIIIIQQAA")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["mma\nleaks: 0", "causal\nleaks: 0", "leaky\nleaks: 3"]
    assert all(ax.get_xlabel() == "key (attended to)" and ax.get_ylabel() == "query (attending)" for ax in axes)
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["may attend", "masked"]
    assert "A answer" in legend.get_title().get_text() and "leaks" in legend.get_title().get_text()
    result = CliRunner().invoke(app, ["masks", "show", "-r", "mma", "--plot", str(tmp_path / "m.png")])
    assert result.exit_code == 0 and (tmp_path / "m.png").stat().st_size > 0
