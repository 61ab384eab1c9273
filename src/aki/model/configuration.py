"""Configuration of the AKI model: a vision tower, a Perceiver resampler and a causal LLM.

The vision and text sub-configs are any transformers configs (resolved through ``AutoConfig`` by
their ``model_type``), so ``save_pretrained`` / ``from_pretrained`` round-trip them as nested
dicts. The attention rule the decoder reads the prompt with is part of the config, because the
checkpoint was trained under it.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any

from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

from aki.masks import RULE_NAMES, Rule, get_rule

# The paper's AKI-4B vision tower (google/siglip-so400m-patch14-384), used when none is given.
SIGLIP_SO400M_384 = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "image_size": 384,
    "patch_size": 14,
}


@dataclass
class AkiResamplerConfig:
    """Perceiver Resampler (Flamingo style) that turns vision tokens into ``num_latents`` LLM tokens.

    ``dim`` is the vision hidden size (0 = take it from the vision config); ``output_dim`` the LLM
    hidden size (0 = take it from the text config). Defaults are the paper's (144 latents, depth 6,
    8 heads of 64, ff_mult 4). A plain dataclass, not a sub-config: it has no attention backend
    to dispatch, and is serialised as a dict inside ``AkiConfig``.
    """

    dim: int = 0
    output_dim: int = 0
    num_latents: int = 144
    depth: int = 6
    heads: int = 8
    head_dim: int = 64
    ff_mult: int = 4
    layer_norm_eps: float = 1e-5
    # Strength of a fixed 2D region prior in the cross-attention (aki.model.resampler.region_bias);
    # 0 = off: the official resampler, which reads positions only from the vision features.
    region_prior: float = 0.0

    @classmethod
    def from_any(cls, value: AkiResamplerConfig | dict[str, Any] | None) -> AkiResamplerConfig:
        if isinstance(value, cls):
            return value
        value = dict(value or {})
        value.pop("model_type", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown resampler_config keys {unknown}; known: {sorted(known)}.")
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AkiConfig(PretrainedConfig):
    """Config of :class:`~aki.model.modeling.AkiForConditionalGeneration`.

    Args:
        vision_config: any transformers vision config (dict or object); SigLIP so400m-384 by default.
        resampler_config: :class:`AkiResamplerConfig` (dict or object).
        text_config: any causal-LM config (Llama 3.x, Phi-3/3.5, Qwen2.5, Qwen3, ...); Llama by default.
        image_token_id: id of ``<image>``; the processor expands each marker to ``num_latents`` copies.
        attention_rule: how the decoder reads the prompt (``aki.masks.RULE_NAMES``).
        rule_options: the rule's options, validated by the rule (``{"unlock_fraction": 0.3}`` for
            ``mma``, ``{"grid": [12, 12]}`` for ``cca``). Configs saved with the old top-level
            ``unlock_fraction`` / ``cca_grid`` keys load into it.
        freeze_vision: keep the vision tower frozen and run it under ``no_grad`` (as in the paper).
        vision_feature_layer: -1 = the tower's ``last_hidden_state`` (after its final LayerNorm, as in
            AKI); any other index takes ``hidden_states[i]`` (before that LayerNorm).
        lm_head_bias: give the LLM output head a bias (the official AKI checkpoint trains one).
    """

    model_type = "aki"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig, model_type="siglip_vision_model", init_kwargs=SIGLIP_SO400M_384
        ),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    vision_config: dict | PretrainedConfig | None = None
    resampler_config: dict | AkiResamplerConfig | None = None
    text_config: dict | PretrainedConfig | None = None
    image_token_id: int = 32000
    attention_rule: str = "mma"
    rule_options: dict | None = None
    freeze_vision: bool = True
    vision_feature_layer: int = -1
    lm_head_bias: bool = False
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        # Configs saved before rule_options had the rule's options as top-level keys.
        legacy = {"unlock_fraction": kwargs.pop("unlock_fraction", None), "grid": kwargs.pop("cca_grid", None)}
        super().__post_init__(**kwargs)
        self.resampler_config = AkiResamplerConfig.from_any(self.resampler_config)
        options = dict(self.rule_options or {})
        takes = get_rule(self.attention_rule).option_names if self.attention_rule in RULE_NAMES else ()
        for key, value in legacy.items():
            if value is None:
                continue
            if key in takes:
                options.setdefault(key, value)
            else:  # the old code ignored it too (cca_grid under another rule)
                warnings.warn(f"ignoring the saved option {key}={value!r}: rule {self.attention_rule!r} does not "
                              "take it.", stacklevel=2)
        self.set_rule(self.attention_rule, options)
        if self.resampler_config.dim in (0, None):
            self.resampler_config.dim = self.vision_config.hidden_size
        if self.resampler_config.output_dim in (0, None):
            self.resampler_config.output_dim = self.text_config.hidden_size
        self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", False))

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if isinstance(self.resampler_config, AkiResamplerConfig):
            out["resampler_config"] = self.resampler_config.to_dict()
        return out

    @property
    def num_image_tokens(self) -> int:
        """How many LLM tokens one image becomes (the resampler's latents)."""
        return int(self.resampler_config.num_latents)

    @property
    def rule(self) -> Rule:
        """The :class:`aki.masks.Rule` the decoder reads prompts with."""
        return get_rule(self.attention_rule)

    def set_rule(self, attention_rule: str, rule_options: dict | None = None) -> None:
        """Switch the rule (and its options), validating both: a bad option fails here, not at
        the first forward pass. Options stay as given (JSON-friendly) in ``rule_options``."""
        if attention_rule not in RULE_NAMES:
            raise ValueError(f"attention_rule must be one of {RULE_NAMES}; got {attention_rule!r}.")
        options = {k: v for k, v in dict(rule_options or {}).items() if v is not None}
        get_rule(attention_rule).check_options(options)
        self.attention_rule = attention_rule
        self.rule_options = options


def _register() -> None:
    """Make ``AutoConfig`` (and so ``AutoTokenizer`` on a saved AKI folder) know the ``aki`` type."""
    with contextlib.suppress(ValueError):  # already registered (module reloaded)
        AutoConfig.register("aki", AkiConfig)


_register()

__all__ = ["AkiConfig", "AkiResamplerConfig"]
