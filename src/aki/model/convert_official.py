"""Convert the official AKI checkpoint (sony/aki, e.g. AKI-4B-phi-3.5-mini) into this model.

The official module names its parts ``vision_encoder`` / ``vision_tokenizer`` / ``lang_model`` and
keeps the two added tokens' parameters apart from the original matrices ("decoupled"):

- input embedding = ``weight`` (original vocab V) + ``additional_embedding`` (2 rows);
- output head = ``weight`` and ``bias`` over V, plus ``additional_fc`` (2 outputs with bias),
  concatenated: logits have V + 2 columns.

Here both are merged into one embedding of V + 2 rows and one biased ``lm_head`` of V + 2 outputs
(``lm_head_bias=True`` in the config), so the logits equal the official ones column for column.
The official input embedding sends ids above ``max_original_id`` (the added tokens' tokenizer
ids, 32012 and 32013 for Phi-3.5) to ``additional_embedding``; pass those ids as
``additional_token_ids`` (read from ``added_tokens.json`` by :func:`convert_official_checkpoint`)
and their rows are written there too, so token embeddings match for every input id.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from aki.model.configuration import SIGLIP_SO400M_384, AkiConfig
from aki.model.resampler import OFFICIAL_LAYER_NAMES

VISION, RESAMPLER, LLM = "vision_encoder.", "vision_tokenizer.", "lang_model."
EMBED = "lang_model.model.embed_tokens."
HEAD = "lang_model.lm_head."
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "added_tokens.json",
                   "special_tokens_map.json", "chat_template.jinja")
PHI35_MINI = {  # microsoft/Phi-3.5-mini-instruct, the official AKI-4B's LLM (rope scaling not included)
    "model_type": "phi3",
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 131072,
    "original_max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "bos_token_id": 1,
    "eos_token_id": 32000,
    "pad_token_id": 32000,
    "sliding_window": 262144,
    "tie_word_embeddings": False,
}


def _resampler_key(rest: str) -> str:
    m = re.fullmatch(r"layers\.(\d+)\.(\d(?:\.\w+)?)\.(weight|bias)", rest)
    if m:
        idx, name, leaf = m.groups()
        if name not in OFFICIAL_LAYER_NAMES:
            raise KeyError(f"unknown official resampler parameter vision_tokenizer.{rest}")
        return f"resampler.layers.{idx}.{OFFICIAL_LAYER_NAMES[name]}.{leaf}"
    if rest == "latents" or rest.split(".")[0] in ("norm", "projection"):
        return f"resampler.{rest}"
    raise KeyError(f"unknown official resampler parameter vision_tokenizer.{rest}")


def convert_official_state_dict(
    state_dict: dict[str, torch.Tensor],
    additional_token_ids: Sequence[int] | None = None,
) -> dict[str, torch.Tensor]:
    """Official key layout -> this model's state dict (decoupled tokens merged, head bias kept)."""
    out: dict[str, torch.Tensor] = {}
    sd = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state_dict.items()}
    for key, value in sd.items():
        if key.startswith(VISION):
            out["vision_tower." + key[len(VISION):]] = value
        elif key.startswith(RESAMPLER):
            out[_resampler_key(key[len(RESAMPLER):])] = value
        elif key.startswith((EMBED, HEAD)):
            continue  # merged below
        elif key.startswith(LLM):
            out["language_model." + key[len(LLM):]] = value
        else:
            raise KeyError(f"unexpected key {key!r}: not in the official AKI layout "
                           "(vision_encoder.*, vision_tokenizer.*, lang_model.*)")

    weight = sd[EMBED + "weight"]
    extra = sd.get(EMBED + "additional_embedding.weight")
    embed = weight if extra is None else torch.cat([weight, extra.to(weight.dtype)], dim=0)
    if extra is not None and additional_token_ids is not None:
        if len(additional_token_ids) != extra.shape[0]:
            raise ValueError(f"additional_token_ids has {len(additional_token_ids)} ids for {extra.shape[0]} "
                             "additional embeddings.")
        embed = embed.clone()
        for row, token_id in enumerate(additional_token_ids):
            embed[int(token_id)] = extra[row]
    out["language_model.model.embed_tokens.weight"] = embed

    head_w = sd[HEAD + "weight"]
    head_b = sd.get(HEAD + "bias", torch.zeros(head_w.shape[0], dtype=head_w.dtype))
    fc_w, fc_b = sd.get(HEAD + "additional_fc.weight"), sd.get(HEAD + "additional_fc.bias")
    if fc_w is not None:
        head_w = torch.cat([head_w, fc_w.to(head_w.dtype)], dim=0)
        fc_b = fc_b if fc_b is not None else torch.zeros(fc_w.shape[0], dtype=head_b.dtype)
        head_b = torch.cat([head_b, fc_b.to(head_b.dtype)], dim=0)
    if head_w.shape[0] != embed.shape[0]:
        raise ValueError(f"output head has {head_w.shape[0]} rows but the embedding {embed.shape[0]}.")
    out["language_model.lm_head.weight"] = head_w
    out["language_model.lm_head.bias"] = head_b
    return out


def official_config(
    state_dict: dict[str, torch.Tensor],
    *,
    text_config: dict[str, Any] | None = None,
    vision_config: dict[str, Any] | None = None,
    image_token_id: int = 32012,
    resampler_head_dim: int = 64,
    **config_kwargs,
) -> AkiConfig:
    """An :class:`AkiConfig` whose shapes fit an official state dict (merged vocabulary: V + 2).

    ``text_config`` should be the LLM's own config (Phi-3.5's carries its long-rope factors);
    without it the Phi-3.5-mini shapes are assumed and rope scaling is left out.
    """
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    latents = sd[RESAMPLER + "latents"]
    depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith(RESAMPLER + "layers."))
    inner = sd[RESAMPLER + "layers.0.0.to_q.weight"].shape[0]
    if inner < resampler_head_dim or inner % resampler_head_dim:
        raise ValueError(f"the resampler's attention width {inner} is not a multiple of head_dim "
                         f"{resampler_head_dim}; pass resampler_head_dim (the official release uses 64).")
    resampler = {
        "dim": latents.shape[1],
        "num_latents": latents.shape[0],
        "depth": depth,
        "head_dim": resampler_head_dim,
        "heads": inner // resampler_head_dim,
        "ff_mult": sd[RESAMPLER + "layers.0.1.1.weight"].shape[0] // latents.shape[1],
        "output_dim": sd[RESAMPLER + "projection.weight"].shape[0],
    }
    vocab = sd[EMBED + "weight"].shape[0] + (
        sd[EMBED + "additional_embedding.weight"].shape[0] if EMBED + "additional_embedding.weight" in sd else 0
    )
    text = dict(text_config or PHI35_MINI)
    text["vocab_size"] = vocab
    text.setdefault("hidden_size", sd[EMBED + "weight"].shape[1])
    vision = dict(vision_config or _vision_shapes(sd))
    return AkiConfig(
        vision_config=vision,
        resampler_config=resampler,
        text_config=text,
        image_token_id=image_token_id,
        lm_head_bias=True,
        **{"attention_rule": "mma", **config_kwargs},
    )


def _vision_shapes(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """SigLIP so400m-384's config, with every shape the tensors tell overridden (heads cannot be told)."""
    vision: dict[str, Any] = {"model_type": "siglip_vision_model", **SIGLIP_SO400M_384}
    if VISION + "post_layernorm.weight" not in sd:
        return vision
    patch = sd[VISION + "embeddings.patch_embedding.weight"]
    n_pos = sd[VISION + "embeddings.position_embedding.weight"].shape[0]
    vision.update(
        hidden_size=patch.shape[0],
        patch_size=patch.shape[-1],
        image_size=round(n_pos**0.5) * patch.shape[-1],
        intermediate_size=sd[VISION + "encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=1 + max(int(k.split(".")[3]) for k in sd if k.startswith(VISION + "encoder.layers.")),
        vision_use_head=VISION + "head.probe" in sd,
    )
    return vision


def _read_config(value: dict[str, Any] | str | Path | None, what: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    p = Path(value)
    p = p / "config.json" if p.is_dir() else p
    if not p.exists():
        raise FileNotFoundError(f"{what} {str(p)!r} does not exist.")
    return json.loads(p.read_text())


def load_state_dict(src: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint directory (``*.safetensors``, else ``*.pt`` / ``*.bin``) or file."""
    from safetensors.torch import load_file

    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"official checkpoint {str(src)!r} does not exist.")
    files = [src] if src.is_file() else sorted(src.glob("*.safetensors")) or sorted(
        [*src.glob("*.pt"), *src.glob("*.bin")])
    if not files:
        raise FileNotFoundError(f"no *.safetensors, *.pt or *.bin weights in {str(src)!r}.")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        if f.suffix == ".safetensors":
            sd.update(load_file(str(f)))
        else:
            obj = torch.load(f, map_location="cpu", weights_only=True)
            for key in ("model_state_dict", "state_dict", "model"):
                if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                    obj = obj[key]
            sd.update(obj)
    return sd


def _added_token_ids(src: Path) -> dict[str, int]:
    f = src / "added_tokens.json" if src.is_dir() else src.parent / "added_tokens.json"
    return json.loads(f.read_text()) if f.exists() else {}


def convert_official_checkpoint(
    src: str | Path,
    dst: str | Path,
    *,
    text_config: dict[str, Any] | str | Path | None = None,
    vision_config: dict[str, Any] | str | Path | None = None,
    vision: str | Path | None = None,
    image_token_id: int | None = None,
    dtype: torch.dtype | None = None,
    **config_kwargs,
):
    """Convert ``src`` (official checkpoint dir or file) and ``save_pretrained`` it into ``dst``.

    ``text_config`` / ``vision_config``: the LLM's / tower's config (dict, config.json path or
    directory; the tower's shapes are otherwise read from the tensors). ``vision``: a SigLIP
    checkpoint (directory or hub id) for checkpoints saved without ``vision_encoder.*`` (the
    official training checkpoints drop them). Tokenizer files found next to ``src`` are copied.
    Returns the converted model.
    """
    from aki.model.modeling import AkiForConditionalGeneration

    src, dst = Path(src), Path(dst)
    sd = load_state_dict(src)
    added = _added_token_ids(src)
    if image_token_id is None:
        image_token_id = added.get("<image>", 32012)
    extra_ids = [added[t] for t in ("<image>", "<|endofchunk|>") if t in added]
    text_config = _read_config(text_config, "text config")
    vision_cfg = _read_config(vision_config, "vision config")
    has_vision = any(k.startswith(VISION) for k in sd)
    tower = None
    if not has_vision:
        if vision is None:
            raise ValueError(f"{str(src)!r} holds no vision_encoder.* weights (a training checkpoint?); pass "
                             "vision=<SigLIP checkpoint dir or hub id> to take the tower from there.")
        from transformers import AutoModel

        from aki.model.modeling import _load_or_explain

        tower = _load_or_explain(AutoModel.from_pretrained, vision, "vision tower")
        tower = getattr(tower, "vision_model", tower)
        vision_cfg = tower.config.to_dict()
    config = official_config(sd, text_config=text_config, vision_config=vision_cfg,
                             image_token_id=image_token_id, **config_kwargs)
    converted = convert_official_state_dict(sd, extra_ids if len(extra_ids) == 2 else None)
    if tower is not None:
        converted.update({"vision_tower." + k: v for k, v in tower.state_dict().items()})
    model = AkiForConditionalGeneration(config)
    result = model.load_state_dict(converted, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"converted weights do not fit: missing {result.missing_keys[:8]}, "
                         f"unexpected {result.unexpected_keys[:8]}")
    if dtype is not None:
        model = model.to(dtype)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    src_dir = src if src.is_dir() else src.parent
    for name in TOKENIZER_FILES:
        if (src_dir / name).exists():
            shutil.copy2(src_dir / name, dst / name)
    return model


__all__ = ["convert_official_checkpoint", "convert_official_state_dict", "load_state_dict", "official_config"]
