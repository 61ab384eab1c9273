"""The decoder taught in words (``aki pretrain-llm``): text data, answer prior, the stage end to end,
determinism, resume checks, and a tiny VLM built around the decoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from aki.cli.main import app
from aki.language.pretrain import LanguagePretrainConfig, check_resumable, pretrain_language_model
from aki.language.scene_text import (
    TEST_WORDING_FILE,
    answer_prior,
    write_test_wording_questions,
    write_text_data,
)


@pytest.fixture(scope="module")
def short_decoder(tmp_path_factory):
    """``aki pretrain-llm`` on 300 scenes for 80 steps (about 40 s on one core)."""
    out = tmp_path_factory.mktemp("decoder")
    res = CliRunner().invoke(app, ["pretrain-llm", "--out", str(out), "--scenes", "300", "--held-out-scenes", "30",
                                   "--steps", "80", "--score-items", "200", "--save-every", "40", "--no-progress"])
    assert res.exit_code == 0, res.output
    return out, res.output


def _count_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_text_data_tells_the_scene_and_holds_scenes_out(synth_train, tmp_path):
    data = synth_train(40)
    n_train, n_held = write_text_data(data, tmp_path, held_out=5)
    train, held = _rows(tmp_path / "train" / "sft.jsonl"), _rows(tmp_path / "heldout.jsonl")
    assert (len(train), len(held)) == (n_train, n_held) and n_held > 0
    captions = {Path(r["image"]).stem: r["caption"] for r in _rows(data / "train" / "pt.jsonl")}
    originals = {r["id"]: r for r in _rows(data / "train" / "sft.jsonl")}
    scenes = sorted(captions)
    for row in train + held:
        scene = Path(originals[row["id"]]["image"]).stem
        assert row["conversations"][0]["value"] == \
            originals[row["id"]]["conversations"][0]["value"].replace("<image>", captions[scene])
        assert "<image>" not in row["conversations"][0]["value"]
        assert (row in held) == (scene in scenes[-5:])  # the last five scenes, and only they, are held out
    with pytest.raises(ValueError, match="holding out 40 leaves none"):
        write_text_data(data, tmp_path / "x", held_out=40)


def test_test_wording_questions_ask_the_held_out_scenes_as_the_test_split_does(tmp_path):
    """The probe's CV-Bench-worded questions: held-out scenes only, the test split's wording and
    prompt, the scene told by its caption, a letter answer. Training never uses that wording
    (except counting's, which both share)."""
    from aki.data.synth import generate
    from aki.data.synth.questions import plural
    from aki.data.synth.scenes import COLOURS, SHAPES
    from aki.prompts import OPTION_LETTER

    data = tmp_path / "data"
    generate(data, n_train=40, n_test=30, seed=0)
    write_text_data(data, tmp_path, held_out=8)
    n = write_test_wording_questions(data, tmp_path, held_out=8)
    rows = _rows(tmp_path / TEST_WORDING_FILE)
    words = {*COLOURS, *SHAPES, *map(plural, SHAPES)}

    def template(question: str) -> str:  # the wording, the objects' names left out
        return " ".join("_" if w.strip("?,") in words else w for w in question.split())

    test_templates = {(r["task"], template(r["question"])) for r in _rows(data / "test" / "cvbench.jsonl")}
    captions = {Path(r["image"]).stem: r["caption"] for r in _rows(data / "train" / "pt.jsonl")}
    trained = {r["conversations"][0]["value"].split("\n")[1] for r in _rows(tmp_path / "train" / "sft.jsonl")}
    assert n == len(rows) and {r["task"] for r in rows} == {"Count", "Relation", "Depth", "Distance"}
    for row in rows:
        scene, task = row["id"].rsplit("-", 1)
        assert scene in sorted(captions)[-8:] and task == row["task"] and row["format"] == "mc"
        caption, prompt = row["conversations"][0]["value"].split("\n", 1)
        assert caption == captions[scene] and prompt.startswith(OPTION_LETTER)
        question = prompt.split("\n")[0][len(OPTION_LETTER) + 1:]
        assert (task, template(question)) in test_templates  # the test split's wording
        assert task == "Count" or not any(question in t for t in trained)
        options = [line[3:] for line in prompt.split("\n") if line[1:3] == ". "]
        assert row["conversations"][1]["value"] in "ABCD"[:len(options)]
    write_test_wording_questions(data, tmp_path / "again", held_out=8)
    assert _rows(tmp_path / "again" / TEST_WORDING_FILE) == rows  # deterministic


def test_answer_prior_is_the_most_frequent_training_answer(tmp_path):
    def row(task, answer):
        return json.dumps({"task": task, "format": "short",
                           "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": answer}]})

    (tmp_path / "train.jsonl").write_text("\n".join([row("Count", "2"), row("Count", "2"), row("Count", "3"),
                                                     row("Existence", "no")]) + "\n")
    (tmp_path / "held.jsonl").write_text("\n".join([row("Count", "2"), row("Count", "3"), row("Count", "2"),
                                                    row("Count", "2"), row("Existence", "yes")]) + "\n")
    assert answer_prior(tmp_path / "train.jsonl", tmp_path / "held.jsonl") == \
        {"Count/short": 75.0, "Existence/short": 0.0}
    assert answer_prior(tmp_path / "train.jsonl", tmp_path / "held.jsonl", n_items=2) == {"Count/short": 50.0}


def test_language_stage_improves_the_probe_and_exports_a_causal_lm(short_decoder):
    out, output = short_decoder
    probe = json.loads((out / "probe.json").read_text())
    assert "answer_prior" in output and "untrained" in output and "Count/mc" in output
    assert probe["held_out_questions"] == 189
    assert probe["trained"].keys() == probe["untrained"].keys() == probe["answer_prior"].keys()
    wording = probe["test_wording"]
    assert wording["trained"].keys() == wording["answer_prior"].keys() == {"Count/mc", "Depth/mc", "Distance/mc", "Relation/mc"}
    assert wording["held_out_questions"] == _count_lines(out / "work" / "text" / TEST_WORDING_FILE)
    assert "the test split's CV-Bench wording" in output
    # this short run measured a mean of 25.7 % right (untrained 0.0): it has learned the answer formats
    assert probe["mean"]["trained"] > probe["mean"]["untrained"] + 10.0, probe["mean"]
    record = json.loads((out / "pretrain.json").read_text())
    assert record["seed"] == 0 and record["command"].startswith("aki pretrain-llm --out")
    assert record["losses"][-1]["loss"] < record["losses"][0]["loss"] - 0.5
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert type(lm).__name__ == "LlamaForCausalLM" and lm.config.initializer_range == 0.08
    assert "<image>" in tok.get_vocab() and lm.get_input_embeddings().num_embeddings == len(tok)


def test_tiny_vlm_starts_from_the_decoder(short_decoder, synth_train):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aki.experiments.tiny_vlm import TinyVLMSize, build_tiny_vlm

    out, _ = short_decoder
    lm = AutoModelForCausalLM.from_pretrained(out)
    model, processor = build_tiny_vlm(synth_train(40), TinyVLMSize(), language_model=out)
    assert model.config.text_config.hidden_size == lm.config.hidden_size  # the decoder's own size
    theirs = lm.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in model.language_model.state_dict().items())
    assert processor.tokenizer.get_vocab() == AutoTokenizer.from_pretrained(out).get_vocab()


def test_tiny_vlm_names_a_folder_without_a_decoder(synth_train, tmp_path):
    from aki.experiments.tiny_vlm import TinyVLMSize, build_tiny_vlm

    with pytest.raises(FileNotFoundError, match=r"holds no language model.*aki pretrain-llm"):
        build_tiny_vlm(synth_train(40), TinyVLMSize(), language_model=tmp_path)


def test_same_seed_same_decoder(tmp_path):
    from safetensors.torch import load_file

    for name in ("a", "b"):
        pretrain_language_model(LanguagePretrainConfig(out=str(tmp_path / name), n_scenes=60, held_out_scenes=6,
                                                       steps=4, score_items=10, progress=False), say=lambda _: None)
    a, b = (load_file(tmp_path / n / "model.safetensors") for n in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_settings_and_the_cli_refuses_to_replace(short_decoder):
    out, _ = short_decoder
    with pytest.raises(ValueError, match=r"other settings \(steps: 80 -> 90\)"):
        check_resumable(LanguagePretrainConfig(out=str(out), n_scenes=300, held_out_scenes=30, steps=90,
                                               score_items=200, save_every=40))
    same = LanguagePretrainConfig(out=str(out / "older"), n_scenes=300, held_out_scenes=30, steps=80,
                                  score_items=200, save_every=40)
    (out / "older" / "work").mkdir(parents=True)
    saved = json.loads((out / "work" / "settings.json").read_text())
    del saved["layers"]  # a run saved before the option existed had the default, the only choice then
    (out / "older" / "work" / "settings.json").write_text(json.dumps(saved))
    check_resumable(same)
    with pytest.raises(ValueError, match=r"layers: 4 -> 6"):
        check_resumable(LanguagePretrainConfig(**{**same.__dict__, "layers": 6}))
    before = (out / "model.safetensors").read_bytes()
    res = CliRunner().invoke(app, ["pretrain-llm", "--out", str(out), "--steps", "1"])
    assert res.exit_code == 2 and "already holds a decoder" in res.output and "--resume" in res.output
    res = CliRunner().invoke(app, ["pretrain-llm", "--out", str(out / "other"), "--held-out-scenes", "300",
                                   "--scenes", "300"])
    assert res.exit_code == 2 and "held_out_scenes (300) must be fewer than n_scenes (300)" in res.output
    assert not (out / "other").exists()
    assert (out / "model.safetensors").read_bytes() == before


def test_resume_of_a_finished_run_scores_and_exports_it_again(short_decoder):
    out, _ = short_decoder
    before = {name: (out / name).read_bytes() for name in ("model.safetensors", "probe.json")}
    res = CliRunner().invoke(app, ["pretrain-llm", "--out", str(out), "--scenes", "300", "--held-out-scenes", "30",
                                   "--steps", "80", "--score-items", "200", "--save-every", "40", "--no-progress",
                                   "--resume"])
    assert res.exit_code == 0, res.output
    assert "training questions" not in res.output  # the data was reused, not made again
    assert {name: (out / name).read_bytes() for name in before} == before


def test_quickstart_starts_from_the_given_decoder(short_decoder, tmp_path):
    from safetensors.torch import load_file

    out, _ = short_decoder
    run = tmp_path / "qs"
    res = CliRunner().invoke(app, ["quickstart", "--out", str(run), "--fast", "--language-model", str(out)])
    assert res.exit_code == 0, res.output
    settings = json.loads((run / "settings.json").read_text())
    assert settings["language_model"] == str(out)
    ours = load_file(out / "model.safetensors")
    init = load_file(run / "seed0" / "init" / "model.safetensors")
    assert all(torch.equal(init[f"language_model.{k}"], v) for k, v in ours.items())


def test_quickstart_decoder_options(tmp_path, monkeypatch, capsys):
    """The shipped decoder is the default (``--shipped-language-model`` says so explicitly); a random
    one is ``--random-language-model``; any two of the three choices are refused."""
    import aki.language
    from aki.cli.quickstart import quick_settings

    for pair in (["--language-model", str(tmp_path), "--shipped-language-model"],
                 ["--random-language-model", "--shipped-language-model"],
                 ["--language-model", str(tmp_path), "--random-language-model"]):
        res = CliRunner().invoke(app, ["quickstart", "--out", str(tmp_path), "--fast", *pair])
        assert res.exit_code == 2 and "exclude each other" in res.output, pair
    shipped = str(aki.language.PRETRAINED_LANGUAGE_MODEL)
    assert quick_settings(tmp_path / "qs", fast=True).language_model == shipped
    assert quick_settings(tmp_path / "qs", fast=True, shipped_language_model=True).language_model == shipped
    assert quick_settings(tmp_path / "qs", fast=True, random_language_model=True).language_model is None
    assert quick_settings(tmp_path / "qs", fast=True, language_model=tmp_path).language_model == str(tmp_path)
    monkeypatch.setattr(aki.language, "PRETRAINED_LANGUAGE_MODEL", tmp_path / "not-installed")
    import typer

    for flags in ({}, {"shipped_language_model": True}):
        with pytest.raises(typer.Exit):
            quick_settings(tmp_path / "qs", fast=True, **flags)
        assert "decoder shipped with aki is missing" in capsys.readouterr().err
    assert quick_settings(tmp_path / "qs", fast=True, random_language_model=True).language_model is None


def test_a_decoder_field_that_would_not_apply_is_refused(short_decoder, synth_train):
    """A loaded decoder fixes its shape: a TinyVLMSize decoder field set to another value is an error
    naming it, not silently unused; fields left at their defaults are fine."""
    from aki.experiments.tiny_vlm import TinyVLMSize, build_tiny_vlm

    out, _ = short_decoder
    with pytest.raises(ValueError, match=r"llm_hidden=64 \(the decoder has 128\), llm_init_std=0.5 .*"
                                         r"random-language-model"):
        build_tiny_vlm(synth_train(40), TinyVLMSize(llm_hidden=64, llm_init_std=0.5), language_model=out)
    build_tiny_vlm(synth_train(40), TinyVLMSize(llm_init_std=0.08), language_model=out)  # the decoder's own value


def test_scene_conversations_read_the_caption_once_for_all_questions_shuffled(synth_train, tmp_path):
    data = synth_train(40)
    per_question = write_text_data(data, tmp_path / "q", held_out=5)
    per_scene = write_text_data(data, tmp_path / "s", held_out=5, conversations="scene")
    assert per_scene == per_question  # the same questions, grouped
    assert (tmp_path / "s" / "heldout.jsonl").read_bytes() == (tmp_path / "q" / "heldout.jsonl").read_bytes()
    singles = _rows(tmp_path / "q" / "train" / "sft.jsonl")
    scenes = _rows(tmp_path / "s" / "train" / "sft.jsonl")
    assert len(scenes) == 35 and sum(len(r["conversations"]) for r in scenes) == 2 * len(singles)
    captions = {Path(r["image"]).stem: r["caption"] for r in _rows(data / "train" / "pt.jsonl")}
    answers = {(r["id"].rsplit("-", 1)[0], r["conversations"][0]["value"].split("\n", 1)[1]): r["conversations"][1]
               for r in singles}
    firsts = set()
    for row in scenes:
        turns = row["conversations"]
        assert turns[0]["value"].startswith(captions[row["id"]] + "\n")
        assert all(captions[row["id"]] not in t["value"] and "<image>" not in t["value"] for t in turns[2::2])
        questions = [turns[0]["value"].split("\n", 1)[1]] + [t["value"] for t in turns[2::2]]
        assert [answers[row["id"], q] for q in questions] == turns[1::2]  # each question keeps its answer
        firsts.add(next(r["task"] for r in singles if r["id"].startswith(row["id"] + "-")
                        and r["conversations"][0]["value"].endswith(questions[0])))
    assert len(firsts) > 2  # shuffled: the first question is not always of one kind
    assert all(len(r["kinds"]) == len(r["conversations"]) // 2 for r in scenes)
    heldout = tmp_path / "q" / "heldout.jsonl"  # the same training answers, so the same prior
    assert answer_prior(tmp_path / "s" / "train" / "sft.jsonl", heldout) == \
        answer_prior(tmp_path / "q" / "train" / "sft.jsonl", heldout)
    with pytest.raises(ValueError, match="max_length 192 would cut most"):
        LanguagePretrainConfig(max_length=192).validate()
    res = CliRunner().invoke(app, ["pretrain-llm", "--out", str(tmp_path / "x"), "--conversations", "dialogue"])
    assert res.exit_code == 2 and "conversations must be one of ('question', 'scene')" in res.output


def test_augmented_scene_conversations_add_a_letter_drill_and_lead_ins_only(synth_train, tmp_path):
    """``augment``: one drill turn per scene whose letter names the asked option, generic lead-ins
    before about half of the questions, and nothing else changed."""
    from aki.language.scene_text import DRILL_KIND, LEAD_INS

    data = synth_train(40)
    counts = write_text_data(data, tmp_path / "s", held_out=5, conversations="scene")
    assert write_text_data(data, tmp_path / "a", held_out=5, conversations="scene", augment=True) == counts
    plain = _rows(tmp_path / "s" / "train" / "sft.jsonl")
    augmented = _rows(tmp_path / "a" / "train" / "sft.jsonl")
    assert (tmp_path / "a" / "heldout.jsonl").read_bytes() == (tmp_path / "s" / "heldout.jsonl").read_bytes()
    led = asked = 0
    for row, base in zip(augmented, plain, strict=True):
        k = row["kinds"].index(DRILL_KIND)
        assert row["kinds"].count(DRILL_KIND) == 1 and k > 0  # never before the caption's turn
        drill, letter = row["conversations"][2 * k]["value"], row["conversations"][2 * k + 1]["value"]
        named = drill.split("?")[0].split(" is ")[-1].split(" says ")[-1]
        assert f"\n{letter}. {named}\n" in drill
        turns = row["conversations"][:2 * k] + row["conversations"][2 * k + 2:]
        assert row["kinds"][:k] + row["kinds"][k + 1:] == base["kinds"]
        for turn, original in zip(turns, base["conversations"], strict=True):
            stripped = turn["value"]
            for lead_in in LEAD_INS:
                stripped = stripped.replace(f"{lead_in} ", "", 1)
            assert stripped == original["value"]
            led += stripped != turn["value"] and turn["from"] == "human"
            asked += turn["from"] == "human"
    assert 0.35 < led / asked < 0.65, (led, asked)
    with pytest.raises(ValueError, match="needs conversations='scene'"):
        write_text_data(data, tmp_path / "q", held_out=5, augment=True)
    with pytest.raises(ValueError, match=r"it needs conversations 'scene' .*pass --no-augment"):
        LanguagePretrainConfig(conversations="question").validate()
    LanguagePretrainConfig(conversations="question", augment=False, max_length=192).validate()


def test_scene_conversations_train_whole_conversations_and_layers_set_the_depth(tmp_path):
    summary = pretrain_language_model(LanguagePretrainConfig(
        out=str(tmp_path), n_scenes=60, held_out_scenes=6, steps=3, batch_size=4, max_length=480,
        conversations="scene", augment=True, layers=6, score_items=10, progress=False), say=lambda _: None)
    assert json.loads((tmp_path / "config.json").read_text())["num_hidden_layers"] == 6
    assert "--layers 6" in summary["command"] and summary["command"].endswith("--augment")
    import yaml

    run = yaml.safe_load((tmp_path / "work" / "run" / "config.yaml").read_text())
    assert run["data"]["turns"] == "whole" and run["max_length"] == 480
    assert "--conversations scene" in summary["command"] and (tmp_path / "model.safetensors").is_file()


def test_shipped_decoder_records_how_it_was_made():
    """The decoder shipped with aki loads as a transformers causal LM with the image tokens; its folder
    records the command (the command's defaults), the settings and the probe that made it."""
    from dataclasses import asdict, replace

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aki.language import PRETRAINED_LANGUAGE_MODEL as shipped
    from aki.language.pretrain import equivalent_command

    record = json.loads((shipped / "pretrain.json").read_text())
    cfg = LanguagePretrainConfig(**record["settings"]).validate()
    assert record["command"] == equivalent_command(cfg) and record["seed"] == cfg.seed
    defaults = replace(LanguagePretrainConfig(), out=cfg.out, progress=cfg.progress, num_threads=cfg.num_threads)
    assert asdict(cfg) == asdict(defaults)  # made by `aki pretrain-llm --out DIR` as it stands
    assert record["command"].split(" ", 4)[-1] in (shipped / "README.md").read_text()
    probe = json.loads((shipped / "probe.json").read_text())
    assert probe["mean"]["trained"] > probe["mean"]["answer_prior"] > probe["mean"]["untrained"]
    # asked in the test's wording it still answers with letters (the first shipped decoder got
    # relation 0.0 and distance 3.0 there, lab item 42)
    wording = probe["test_wording"]["trained"]
    assert min(wording["Relation/mc"], wording["Distance/mc"]) > 40.0, wording
    lm = AutoModelForCausalLM.from_pretrained(shipped)
    assert sum(p.numel() for p in lm.parameters()) == record["parameters"]
    assert "<image>" in AutoTokenizer.from_pretrained(shipped).get_vocab()
