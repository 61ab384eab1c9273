"""Mixed precision: fp32 master weights under bf16 compute; pure bf16 only by name, warned;
init.dtype honoured in every stage; the saved config states the real dtype."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aki.training import ConfigError, load_config, train
from aki.training.trainer import build_model


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from aki.data.synth import generate

    d = tmp_path_factory.mktemp("synth")
    generate(d, n_train=16, n_test=0, seed=0)
    return d


def sft(synth: Path, out: Path, **over):
    raw = {
        "output_dir": str(out), "stage": "sft", "max_steps": 2, "seed": 0, "init": {"tiny": "llama"},
        "data": {"num_workers": 0, "sources": [{"format": "sft_llava", "path": str(synth / "train" / "sft.jsonl")}]},
        "batch_size": 4, "max_length": 128, "lr": 2e-5, "min_lr": 2e-5, "warmup_steps": 0,
        "log_every": 1, "save_every": 100, "progress": False, "tensorboard": False,
    }
    raw.update(over)
    return load_config(raw=raw)


def changed(cfg, final: Path) -> dict[str, torch.Tensor]:
    """Per trainable parameter: which elements differ between the start and ``final``."""
    from aki.model import AkiForConditionalGeneration

    start, _ = build_model(cfg)
    dtype = getattr(torch, cfg.weights_dtype)
    before = {n: p.detach().to(dtype) for n, p in start.named_parameters() if p.requires_grad}
    after = dict(AkiForConditionalGeneration.from_pretrained(final).named_parameters())
    return {n: after[n].detach() != before[n] for n in before}


def saved_dtype(final: Path) -> str:
    return json.loads((final / "config.json").read_text())["dtype"]


def test_bf16_compute_keeps_fp32_master_weights_that_all_move(synth, tmp_path):
    cfg = sft(synth, tmp_path / "mixed", precision="bf16")
    assert cfg.weights_dtype == "float32"
    train(cfg)
    final = tmp_path / "mixed" / "final"
    assert saved_dtype(final) == "float32"
    diff = changed(cfg, final)
    assert all(d.any() for d in diff.values()), [n for n, d in diff.items() if not d.any()]
    body = torch.cat([d.flatten() for n, d in diff.items() if "embed_tokens" not in n])
    assert float(body.float().mean()) == 1.0  # every weight moved after 2 steps at lr 2e-5
    # embedding rows move exactly for the tokens the two steps saw (the rest had no gradient)
    assert 0.05 < float(diff["language_model.model.embed_tokens.weight"].any(-1).float().mean()) < 1.0


def test_pure_bf16_only_by_name_and_warned(synth, tmp_path):
    with pytest.raises(ConfigError, match="precision: bf16-pure"):
        sft(synth, tmp_path / "x", init={"tiny": "llama", "dtype": "bfloat16"})
    with pytest.raises(ConfigError, match=r"init\.dtype is float32"):
        sft(synth, tmp_path / "x", precision="bf16-pure", init={"tiny": "llama", "dtype": "float32"})
    with pytest.raises(ConfigError, match="precision must be one of"):
        sft(synth, tmp_path / "x", precision="fp16")

    cfg = sft(synth, tmp_path / "pure", precision="bf16-pure")
    with pytest.warns(UserWarning, match="bf16-pure trains bfloat16 weights"):
        train(cfg)
    final = tmp_path / "pure" / "final"
    assert saved_dtype(final) == "bfloat16"
    diff = changed(cfg, final)
    stuck = [n for n, d in diff.items() if not d.any()]
    assert stuck and all("norm" in n for n in stuck)  # the norms' 1.0 + 2e-5 rounds back to 1.0

    # the next stage, from that folder, trains fp32 master weights again (init.dtype left out)
    nxt = sft(synth, tmp_path / "next", precision="bf16", init={"from_dir": str(tmp_path / "pure")})
    train(nxt)
    assert saved_dtype(tmp_path / "next" / "final") == "float32"
