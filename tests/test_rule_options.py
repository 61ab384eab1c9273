"""Rule options travel as one dict, unchanged, from a training config or a mode to the model."""

from __future__ import annotations

import pytest

from aki.experiments.modes import MODES
from aki.training.config import ConfigError, load_config
from aki.training.trainer import build_model

BASE = {"init": {"tiny": "llama"}, "stage": "sft", "data": {"sources": [{"format": "sft_llava", "path": "x"}]}}


def test_training_config_passes_rule_options_to_the_model():
    cfg = load_config(raw=BASE, overrides=["attention_rule=mma", "rule_options.unlock_fraction=0.3"])
    assert cfg.rule_options == {"unlock_fraction": 0.3}
    model, _ = build_model(cfg)
    assert model.config.attention_rule == "mma" and model.config.rule_options == {"unlock_fraction": 0.3}
    cfg = load_config(raw={**BASE, "attention_rule": "cca", "rule_options": {"grid": [4, 4]}})
    model, _ = build_model(cfg)
    assert model.config.rule_options == {"grid": [4, 4]} and model.config.rule.name == "cca"


@pytest.mark.parametrize(("rule", "options", "match"), [
    ("mma", {"unlock_fraction": 1.5}, r"\[0, 1\]"),
    ("causal", {"unlock_fraction": 0.5}, "takes no option"),
    ("cca", {"grid": "big"}, "two positive integers"),
])
def test_bad_rule_options_fail_before_any_model_is_built(rule, options, match):
    with pytest.raises(ConfigError, match=match):
        load_config(raw={**BASE, "attention_rule": rule, "rule_options": options})


def test_unlock_modes_carry_their_fraction():
    assert MODES["mma@30"].sft_rule_options == {"unlock_fraction": 0.3}
    assert MODES["mma"].sft_rule_options == {}
