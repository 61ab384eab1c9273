"""Config loading, overrides, presets, the optimiser set-up and the CLI."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from aki.training.config import ConfigError, load_config
from aki.training.optim import build_optimizer, lr_at, param_groups

CONFIGS = Path(__file__).parent.parent / "configs"
SRC = {"sources": [{"format": "pt_jsonl", "path": "x.jsonl"}]}


def base(**over) -> dict:
    return {"init": {"tiny": "llama"}, "data": SRC, **over}


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match="'learning_rate'"):
        load_config(raw=base(learning_rate=1e-4))
    with pytest.raises(ConfigError, match=r"'data\.packed'"):
        load_config(raw={"init": {"tiny": "llama"}, "data": {"packed": True}})
    with pytest.raises(ConfigError, match=r"'init\.model'"):
        load_config(raw=base(init={"model": "x"}))
    with pytest.raises(ConfigError, match=r"data\.sources is empty"):
        load_config(raw={"init": {"tiny": "llama"}})


def test_types_and_values_are_checked():
    with pytest.raises(ConfigError, match="max_steps"):
        load_config(raw=base(max_steps="many"))
    with pytest.raises(ConfigError, match="attention_rule"):
        load_config(raw=base(attention_rule="bidirectional"))
    with pytest.raises(ConfigError, match="order"):
        load_config(raw=base(order="I+T"))
    with pytest.raises(ConfigError, match="exactly one"):
        load_config(raw=base(init={"tiny": "llama", "from_dir": "x"}))


def test_overrides_and_stage_defaults():
    cfg = load_config(CONFIGS / "tiny-sft.yaml", ["lr=3e-5", "min_lr=1e-6", "data.packing=true", "init.from_dir=elsewhere"])
    assert cfg.lr == 3e-5 and cfg.data.packing and cfg.init.from_dir == "elsewhere"
    assert cfg.rule == "mma"
    assert load_config(raw=base(stage="pt")).rule == "causal"
    assert load_config(raw=base(stage="sft")).rule == "mma"
    with pytest.raises(ConfigError, match="'nope'"):
        load_config(CONFIGS / "tiny-sft.yaml", ["nope=1"])


@pytest.mark.parametrize("name,steps,lr,min_lr,warmup,wd,batch,maxlen", [
    ("paper-short-pt", 50000, 1e-4, 1e-5, 2000, 1e-2, 192, 128),
    ("paper-short-sft", 5000, 2e-5, 1e-6, 150, 1e-4, 64, 512),
    ("aki4b-pt", 275000, 1e-4, 1e-5, 2000, 1e-2, 192, 128),
    ("aki4b-sft", 10000, 2e-5, 1e-6, 150, 1e-4, 64, 512),
])
def test_paper_presets(name, steps, lr, min_lr, warmup, wd, batch, maxlen):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert (cfg.max_steps, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.weight_decay, cfg.batch_size,
            cfg.max_length) == (steps, lr, min_lr, warmup, wd, batch, maxlen)
    assert cfg.grad_clip == 1.0 and cfg.freeze_vision
    assert cfg.rule == ("causal" if cfg.stage == "pt" else "mma")
    if cfg.stage == "pt":
        assert cfg.init.vision == "google/siglip-so400m-patch14-384"
    else:
        weights = {s.name or s.format: s.weight for s in cfg.data.sources}
        assert len(weights) == 11 and weights["vsr"] == 0.026 and weights["vg"] == 0.047
        assert math.isclose(sum(weights.values()), 1.0, abs_tol=0.002)
    assert cfg.accumulation(8)[0] * cfg.accumulation(8)[1] * 8 == batch


def test_lr_schedule():
    lrs = [lr_at(s, 1e-4, 1e-5, 10, 100) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-5) and lrs[10] == pytest.approx(1e-4)
    assert lrs[5] == pytest.approx(5.5e-5)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[100] == pytest.approx(1e-5) and lrs[55] == pytest.approx(5.5e-5)


def test_no_weight_decay_on_embeddings_norms_biases():
    from aki.testing import tiny_model

    model, _ = tiny_model("llama", seed=0)
    decay, keep = param_groups(model, 0.1)
    assert all("norm" not in n and "embed" not in n and not n.endswith("bias") for n in decay["names"])
    assert any("embed_tokens" in n for n in keep["names"]) and any("norm" in n for n in keep["names"])
    assert any("latents" in n for n in keep["names"])
    assert not any(n.startswith("vision_tower") for n in decay["names"] + keep["names"])  # frozen
    opt = build_optimizer(model, 1e-3, 0.1)
    assert isinstance(opt, torch.optim.AdamW)


def test_cli_reports_config_errors(tmp_path):
    from aki.cli.main import app

    cfg = tmp_path / "bad.yaml"
    cfg.write_text("init: {tiny: llama}\nmax_stpes: 3\n")
    result = CliRunner().invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2
    assert "max_stpes" in result.output
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "--resume" in result.output
