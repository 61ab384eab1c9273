"""Resume compares the saved run's settings with the requested ones before touching anything."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aki.cli.errors import DEBUG_ENV
from aki.cli.main import app
from aki.training import load_config, train
from aki.training.config import ConfigError, DataConfig, ModelInit, TrainConfig
from aki.training.resume import FIXED, MUTABLE, SECTIONS, WHERE, compare


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setenv(DEBUG_ENV, "")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from aki.data.synth import generate

    d = tmp_path_factory.mktemp("synth")
    generate(d, n_train=24, n_test=0, seed=0)
    return d


def raw_cfg(synth: Path, out: Path, **over) -> dict:
    raw = {
        "output_dir": str(out), "stage": "sft", "max_steps": 2, "seed": 0, "init": {"tiny": "llama"},
        "data": {"sources": [{"format": "sft_llava", "path": str(synth / "train" / "sft.jsonl")}], "num_workers": 0},
        "batch_size": 2, "max_length": 96, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 1,
        "log_every": 1, "save_every": 1, "keep_last_k": 2, "progress": False, "tensorboard": False,
        "guard_batches": 1,
    }
    raw.update(over)
    return raw


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its content hash and mode (what a refused command must not change)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(synth, tmp_path_factory) -> tuple[Path, Path]:
    """A finished 2-step MMA run (checkpoints at steps 1 and 2) and its config file."""
    root = tmp_path_factory.mktemp("run")
    out = root / "run"
    config = root / "sft.yaml"
    config.write_text(yaml.safe_dump(raw_cfg(synth, out)))
    train(load_config(config))
    return out, config


def invoke(*args: str):
    return CliRunner().invoke(app, ["train", *args])


def test_every_setting_is_classified_once():
    sections = {"init": ModelInit, "data": DataConfig}
    assert set(sections) == set(SECTIONS)
    every = {f.name for f in dataclasses.fields(TrainConfig) if f.name not in sections}
    every |= {f"{name}.{f.name}" for name, cls in sections.items() for f in dataclasses.fields(cls)}
    assert not (FIXED & MUTABLE) and not (FIXED & WHERE) and not (MUTABLE & WHERE)
    assert every == FIXED | MUTABLE | WHERE, (every - (FIXED | MUTABLE | WHERE), (FIXED | MUTABLE | WHERE) - every)


def test_issue_case_rule_and_lr_change_is_refused_with_every_difference(run):
    out, config = run
    before = snapshot(out)
    result = invoke(str(config), "--resume", "--set", "attention_rule=causal", "--set", "lr=0.5")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("aki train: error: --resume:")
    assert "attention_rule: mma -> causal" in line and "lr: 0.003 -> 0.5" in line
    assert "saved settings" in line and "--overwrite" in line  # the fix
    assert snapshot(out) == before  # config.yaml, checkpoints, metrics untouched


@pytest.mark.parametrize("override, shown", [
    ("seed=1", "seed: 0 -> 1"),
    ("order=T&I", "order: I&T -> T&I"),
    ("batch_size=4", "batch_size: 2 -> 4"),
    ("max_length=64", "max_length: 96 -> 64"),
    ("init.tiny=qwen2", "init.tiny: llama -> qwen2"),
    ("stage=pt", "stage: sft -> pt"),
    ("warmup_steps=0", "warmup_steps: 1 -> 0"),
    ("data.augment=false", "data.augment: true -> false"),
    ("rule_options.unlock_fraction=0.5", 'rule_options: {} -> {"unlock_fraction": 0.5}'),
])
def test_settings_that_change_the_run_are_refused(run, override, shown):
    out, config = run
    before = snapshot(out)
    result = invoke(str(config), "--resume", "--set", override)
    assert result.exit_code == 2 and shown in result.stderr, result.stderr
    assert snapshot(out) == before


def test_changed_data_sources_are_refused(run):
    _, config = run
    raw = yaml.safe_load(config.read_text())
    raw["data"]["sources"][0]["weight"] = 2.0
    with pytest.raises(ConfigError, match=r"data\.sources: .*-> "):
        train(load_config(raw=raw), resume=True)


def test_dot_order_refuses_a_new_max_steps():
    saved = json.loads(json.dumps(dataclasses.asdict(load_config(raw={"init": {"tiny": "llama"}, "order": "dot",
                                                                        "data": {"sources": [{"path": "x"}]}}))))
    cfg = load_config(raw={"init": {"tiny": "llama"}, "order": "dot", "max_steps": 2000,
                           "data": {"sources": [{"path": "x"}]}})
    refused, applied = compare(saved, cfg)
    assert any("max_steps" in r and "half" in r for r in refused) and not applied


def test_a_config_saved_before_rule_options_compares_equal():
    cfg = load_config(raw={"init": {"tiny": "llama"}, "stage": "sft", "data": {"sources": [{"path": "x"}]}})
    saved = json.loads(json.dumps(dataclasses.asdict(cfg)))
    saved.pop("rule_options")
    saved["unlock_fraction"] = None
    assert compare(saved, cfg) == ([], [])
    saved["unlock_fraction"] = 0.3
    refused, _ = compare(saved, cfg)
    assert refused == ['rule_options: {"unlock_fraction": 0.3} -> {}']


def test_allowed_changes_are_applied_and_printed(run, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(run[0], out)
    raw = raw_cfg(Path(yaml.safe_load(run[1].read_text())["data"]["sources"][0]["path"]).parents[1], out,
                  max_steps=3, log_every=2, keep_last_k=3)
    config = tmp_path / "more.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = invoke(str(config), "--resume")
    assert result.exit_code == 0, result.output
    assert "resumed from step-00000002" in result.output
    assert "settings changed on resume: " in result.output
    assert "max_steps: 2 -> 3 (the cosine decay now ends at step 3)" in result.output
    assert "log_every: 1 -> 2" in result.output and "keep_last_k: 2 -> 3" in result.output
    assert yaml.safe_load((out / "config.yaml").read_text())["max_steps"] == 3  # the settings in effect
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_resume_without_a_checkpoint_says_so_and_starts_only_when_asked(synth, tmp_path):
    out = tmp_path / "fresh"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw_cfg(synth, out, max_steps=1)))
    result = invoke(str(config), "--resume")
    assert result.exit_code == 2
    assert "nothing to resume" in result.stderr and "--resume-or-start" in result.stderr
    assert not out.exists()  # nothing created
    result = invoke(str(config), "--resume-or-start")
    assert result.exit_code == 0, result.output
    assert "--resume-or-start: no checkpoint" in result.output
    assert (out / "final" / "config.json").is_file()
    result = invoke(str(config), "--resume", "--overwrite")
    assert result.exit_code == 2 and "contradict" in result.stderr


def test_missing_saved_config_is_refused(run, tmp_path):
    import shutil

    out = tmp_path / "noconf"
    shutil.copytree(run[0], out)
    (out / "config.yaml").unlink()
    raw = yaml.safe_load(run[1].read_text())
    raw["output_dir"] = str(out)
    before = snapshot(out)
    with pytest.raises(ConfigError, match=r"config\.yaml' is missing.*--overwrite"):
        train(load_config(raw=raw), resume=True)
    assert snapshot(out) == before


def test_overwrite_keeps_the_old_run_when_the_new_one_cannot_start(run, tmp_path):
    import shutil

    out = tmp_path / "keep"
    shutil.copytree(run[0], out)
    raw = yaml.safe_load(run[1].read_text())
    raw.update(output_dir=str(out), init={"from_dir": str(tmp_path / "no-such-model")})
    before = snapshot(out)
    with pytest.raises(FileNotFoundError, match=r"no-such-model' \(init\.from_dir\).*does not exist"):
        train(load_config(raw=raw), overwrite=True)
    assert snapshot(out) == before


def test_a_damaged_checkpoint_is_named_and_nothing_changes(run, tmp_path):
    import shutil

    out = tmp_path / "damaged"
    shutil.copytree(run[0], out)
    shard = next((out / "checkpoints" / "step-00000002" / "state").glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:500])
    raw = yaml.safe_load(run[1].read_text())
    raw.update(output_dir=str(out), max_steps=3)  # an allowed change: config.yaml would be rewritten
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    before = snapshot(out)
    result = invoke(str(config), "--resume")
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "\n" not in line and "step-00000002' cannot be read" in line and "delete" in line, line
    assert snapshot(out) == before
