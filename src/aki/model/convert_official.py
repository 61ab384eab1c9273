"""Convert the released AKI checkpoint (sony/aki, ``Sony/AKI-4B-phi-3.5-mini``) into aki's format.

Facts the conversion follows (``shared/reference/official-aki.md``, "Facts confirmed by running
the release"), all read from the release's own files, never assumed:

- **Vocabulary.** The release keeps its added tokens' parameters apart ("decoupled"): the input
  embedding is the LLM's original matrix (Phi-3.5: 32064 rows) plus ``additional_embedding``
  (one row per added token); the output head is the original head *with a trained bias*, cut to
  its first ``initial_tokenizer_len`` columns, then ``additional_fc`` (with bias) appended. Id
  ``initial_tokenizer_len + r`` is added row ``r``. So the model has ``initial_tokenizer_len +
  n_added`` ids (32012 + 2 = 32014), and rows 32012..32063 of the original matrices are never
  used. ``initial_tokenizer_len`` comes from the release's ``config.json`` (or, without it, from
  the tokenizer's length minus the added rows); the names of the added ids (``<image>`` = 32012,
  ``<|endofchunk|>`` = 32013) from ``added_tokens.json`` (or the other tokenizer files).
  Here both matrices become one embedding and one biased ``lm_head`` of that size.
- **Text config.** The LLM is Phi-3.5-mini with its longrope rope scaling; without that config
  the logits differ. It is read from ``--text-config``, from a ``text_config`` in the release's
  ``config.json``, or from the folder (or HF-cache copy) its ``lang_model_path`` names, and the
  conversion is refused, naming the missing file, when none exists.
- **Vision tower.** SigLIP so400m-patch14-384; its shapes are read from the weights, and the
  image size stays 384 (the weights only tell the 27x27 patch grid, which 378 pixels would give
  too). Training checkpoints drop the tower: pass ``vision=`` (a SigLIP folder) for those.

The converted folder holds the model (``from_pretrained``), and when the release's tokenizer
files are present, a processor (``AutoProcessor``) whose ``<image>`` is the model's image id.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aki.constants import END_OF_CHUNK_TOKEN, IMAGE_TOKEN
from aki.model.configuration import SIGLIP_SO400M_384, AkiConfig
from aki.model.resampler import OFFICIAL_LAYER_NAMES

VISION, RESAMPLER, LLM = "vision_encoder.", "vision_tokenizer.", "lang_model."
EMBED = "lang_model.model.embed_tokens."
HEAD = "lang_model.lm_head."
RELEASE_CONFIG = "config.json"
ADDED_TOKENS = "added_tokens.json"


class ConversionError(ValueError):
    """The release folder lacks something the conversion needs, or its files disagree."""


# ----------------------------------------------------------------------------- vocabulary
@dataclass(frozen=True)
class ReleaseVocabulary:
    """The release's ids: below ``original_size`` the LLM's own rows; then the added tokens."""

    original_size: int
    """``initial_tokenizer_len``: ids 0..original_size-1 use the original matrices (cut)."""
    added: tuple[str, ...]
    """Names of the decoupled ids ``original_size``, ``original_size + 1``, ..."""

    @property
    def size(self) -> int:
        return self.original_size + len(self.added)

    def id_of(self, token: str) -> int:
        if token not in self.added:
            raise ConversionError(f"{token} is not one of the release's added tokens {list(self.added)}.")
        return self.original_size + self.added.index(token)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConversionError(f"{str(path)!r} is not valid JSON ({err}).") from err


def added_tokens(folder: Path) -> dict[str, int]:
    """Token -> id of the tokenizer's added tokens: ``added_tokens.json``, else the added tokens
    recorded in ``tokenizer_config.json`` / ``tokenizer.json``."""
    if (folder / ADDED_TOKENS).is_file():
        return {str(k): int(v) for k, v in _read_json(folder / ADDED_TOKENS).items()}
    found: dict[str, int] = {}
    if (folder / "tokenizer_config.json").is_file():
        for tid, info in (_read_json(folder / "tokenizer_config.json").get("added_tokens_decoder") or {}).items():
            found[info["content"]] = int(tid)
    if not found and (folder / "tokenizer.json").is_file():
        for info in _read_json(folder / "tokenizer.json").get("added_tokens") or []:
            found[info["content"]] = int(info["id"])
    return found


def release_vocabulary(folder: Path, n_added: int, release_config: Mapping[str, Any]) -> ReleaseVocabulary:
    """The release's vocabulary layout from its config and tokenizer files (see the module doc)."""
    tokens = added_tokens(folder)
    declared = release_config.get("initial_tokenizer_len")
    if not tokens:
        raise ConversionError(
            f"{str(folder)!r} has no {ADDED_TOKENS} (nor added tokens in tokenizer_config.json / "
            "tokenizer.json), so the ids of <image> and <|endofchunk|> are unknown; copy the "
            "release's tokenizer files next to its weights."
        )
    total = max(tokens.values()) + 1
    original = int(declared) if declared is not None else total - n_added
    if original + n_added != total:
        raise ConversionError(
            f"the release's files disagree: {RELEASE_CONFIG} says initial_tokenizer_len={declared} "
            f"with {n_added} decoupled rows, but the tokenizer's last added id is {total - 1}; "
            "check that the tokenizer files belong to these weights."
        )
    by_id = {tid: tok for tok, tid in tokens.items()}
    missing = [original + r for r in range(n_added) if original + r not in by_id]
    if missing:
        raise ConversionError(f"the tokenizer files name no token for the decoupled ids {missing}.")
    vocab = ReleaseVocabulary(original, tuple(by_id[original + r] for r in range(n_added)))
    vocab.id_of(IMAGE_TOKEN)  # the release's image marker must be one of them
    return vocab


# ----------------------------------------------------------------------------- weights
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


def _strip(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state_dict.items()}


def n_added_rows(state_dict: Mapping[str, torch.Tensor]) -> int:
    """How many decoupled rows the release's embedding and head carry (they must agree)."""
    sd = _strip(state_dict)
    for key in (EMBED + "additional_embedding.weight", HEAD + "additional_fc.weight", HEAD + "additional_fc.bias"):
        if key not in sd:
            raise ConversionError(f"the checkpoint has no {key!r}: it is not in the release's decoupled layout.")
    rows = {int(sd[EMBED + "additional_embedding.weight"].shape[0]), int(sd[HEAD + "additional_fc.weight"].shape[0]),
            int(sd[HEAD + "additional_fc.bias"].shape[0])}
    if len(rows) != 1:
        raise ConversionError(f"additional_embedding and additional_fc disagree on the number of added tokens ({rows}).")
    return rows.pop()


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor], original_size: int) -> dict[str, torch.Tensor]:
    """The release's tensors under aki's names, the vocabulary merged as the release computes it:
    rows ``0..original_size-1`` of the original embedding / head / head bias, then the decoupled
    rows (``additional_embedding``, ``additional_fc`` with its bias)."""
    sd = _strip(state_dict)
    out: dict[str, torch.Tensor] = {}
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
    n_added_rows(sd)
    weight, head_w = sd[EMBED + "weight"], sd[HEAD + "weight"]
    head_b = sd.get(HEAD + "bias")
    if head_b is None:
        raise ConversionError(f"the checkpoint has no {HEAD + 'bias'!r}; the release's head carries a trained bias.")
    for name, tensor in (("embedding", weight), ("head", head_w), ("head bias", head_b)):
        if tensor.shape[0] < original_size:
            raise ConversionError(f"the original {name} has {tensor.shape[0]} rows, fewer than "
                                  f"initial_tokenizer_len={original_size}.")
    extra, fc_w, fc_b = (sd[EMBED + "additional_embedding.weight"], sd[HEAD + "additional_fc.weight"],
                         sd[HEAD + "additional_fc.bias"])
    out["language_model.model.embed_tokens.weight"] = torch.cat([weight[:original_size], extra.to(weight.dtype)])
    out["language_model.lm_head.weight"] = torch.cat([head_w[:original_size], fc_w.to(head_w.dtype)])
    out["language_model.lm_head.bias"] = torch.cat([head_b[:original_size], fc_b.to(head_b.dtype)])
    return out


# ----------------------------------------------------------------------------- configs
def vision_config_from_weights(state_dict: Mapping[str, torch.Tensor], image_size: int | None = None) -> dict[str, Any]:
    """SigLIP so400m-384's config with every shape the tower's tensors tell (heads cannot be told).

    The weights give the patch grid, not the pixel size: ``image_size`` (the release's
    ``base_img_size``) wins; else the so400m default (384) is kept when it yields the same grid
    (384 // 14 = 27), and only a different grid sets ``grid * patch``.
    """
    sd = _strip(state_dict)
    vision: dict[str, Any] = {"model_type": "siglip_vision_model", **SIGLIP_SO400M_384}
    if VISION + "post_layernorm.weight" not in sd:
        return vision
    patch_w = sd[VISION + "embeddings.patch_embedding.weight"]
    n_pos = sd[VISION + "embeddings.position_embedding.weight"].shape[0]
    patch, grid = int(patch_w.shape[-1]), round(n_pos**0.5)
    if image_size is not None and int(image_size) // patch != grid:
        raise ConversionError(f"base_img_size={image_size} gives a {int(image_size) // patch}-patch grid, but the "
                              f"tower's {n_pos} position embeddings are a {grid}x{grid} grid.")
    default = int(SIGLIP_SO400M_384["image_size"])
    size = int(image_size) if image_size is not None else (default if default // patch == grid else grid * patch)
    vision.update(
        hidden_size=int(patch_w.shape[0]),
        patch_size=patch,
        image_size=size,
        intermediate_size=int(sd[VISION + "encoder.layers.0.mlp.fc1.weight"].shape[0]),
        num_hidden_layers=1 + max(int(k.split(".")[3]) for k in sd if k.startswith(VISION + "encoder.layers.")),
        vision_use_head=VISION + "head.probe" in sd,
    )
    return vision


def resampler_config_from_weights(state_dict: Mapping[str, torch.Tensor], head_dim: int = 64) -> dict[str, Any]:
    """The Perceiver resampler's shapes from its tensors (the head width is the release's 64)."""
    sd = _strip(state_dict)
    latents = sd[RESAMPLER + "latents"]
    inner = sd[RESAMPLER + "layers.0.0.to_q.weight"].shape[0]
    if inner < head_dim or inner % head_dim:
        raise ConversionError(f"the resampler's attention width {inner} is not a multiple of head_dim "
                              f"{head_dim}; pass resampler_head_dim (the release uses 64).")
    return {
        "dim": int(latents.shape[1]),
        "num_latents": int(latents.shape[0]),
        "depth": 1 + max(int(k.split(".")[2]) for k in sd if k.startswith(RESAMPLER + "layers.")),
        "head_dim": head_dim,
        "heads": inner // head_dim,
        "ff_mult": int(sd[RESAMPLER + "layers.0.1.1.weight"].shape[0] // latents.shape[1]),
        "output_dim": int(sd[RESAMPLER + "projection.weight"].shape[0]),
    }


SO400M_384 = "siglip-so400m-patch14-384"


def find_vision_config(src: Path, release_config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor],
                       vision_config: Mapping[str, Any] | str | os.PathLike | None = None) -> dict[str, Any]:
    """The tower's config: ``vision_config`` if given; else the config of the model the release's
    ``vision_encoder_path`` names (a local folder or the HF cache); else, when that name is
    SigLIP so400m-patch14-384 (AKI-4B's), its known config with the shapes read from the weights.
    Anything else is refused: the attention heads cannot be read from the weights."""
    if isinstance(vision_config, Mapping):
        return dict(vision_config)
    if vision_config is not None:
        found = _config_file(vision_config, "vision config")
        return dict(found.get("vision_config") or found)
    named = release_config.get("vision_encoder_path")
    if isinstance(named, str) and named:
        local = Path(named).expanduser()
        found = None
        if (local / "config.json").is_file():
            found = _read_json(local / "config.json")
        elif "/" in named and not local.is_absolute():
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(named, "config.json")
            found = _read_json(Path(cached)) if isinstance(cached, str) else None
        if found is not None:
            vision = dict(found.get("vision_config") or found)
            vision.setdefault("model_type", "siglip_vision_model")
            if release_config.get("base_img_size"):
                vision["image_size"] = int(release_config["base_img_size"])
            return vision
        if not named.rstrip("/").endswith(SO400M_384):
            raise ConversionError(
                f"{str(src / RELEASE_CONFIG)!r} names vision_encoder_path={named!r}, which is neither a local "
                "folder holding config.json nor in the HF cache; pass --vision-config with that model's "
                "config.json (its attention heads cannot be read from the weights)."
            )
    return vision_config_from_weights(state_dict, release_config.get("base_img_size"))


def _config_file(value: str | os.PathLike, what: str) -> dict[str, Any]:
    path = Path(value).expanduser()
    path = path / "config.json" if path.is_dir() else path
    if not path.is_file():
        raise ConversionError(f"{what} {str(path)!r} does not exist.")
    return _read_json(path)


def find_text_config(src: Path, release_config: Mapping[str, Any],
                     text_config: Mapping[str, Any] | str | os.PathLike | None = None) -> dict[str, Any]:
    """The LLM's own config (Phi-3.5's carries its longrope factors), never guessed (module doc)."""
    if isinstance(text_config, Mapping):
        found = dict(text_config)
    elif text_config is not None:
        found = _config_file(text_config, "text config")
    elif isinstance(release_config.get("text_config"), Mapping):
        found = dict(release_config["text_config"])
    else:
        found = None
        named = release_config.get("lang_model_path")
        if isinstance(named, str) and named:
            local = Path(named).expanduser()
            local = local if local.is_absolute() else (src / local if (src / local).exists() else local)
            if (local / "config.json").is_file():
                found = _read_json(local / "config.json")
            else:
                from huggingface_hub import try_to_load_from_cache

                cached = try_to_load_from_cache(named, "config.json") if "/" in named else None
                if isinstance(cached, str):
                    found = _read_json(Path(cached))
        if found is None:
            where = (f"{str(src / RELEASE_CONFIG)!r} names lang_model_path={named!r}, which is neither a local "
                     "folder holding config.json nor in the HF cache" if named else
                     f"{str(src / RELEASE_CONFIG)!r} has neither a text_config nor a lang_model_path")
            raise ConversionError(
                f"no text config for the release's LLM: {where}. Pass --text-config with that model's "
                "config.json (for AKI-4B: microsoft/Phi-3.5-mini-instruct's, with its longrope "
                "rope_scaling); it is not guessed, because a wrong one changes every logit."
            )
    if not found.get("model_type"):
        raise ConversionError("the text config has no model_type; pass the LLM's own config.json.")
    return found


# ----------------------------------------------------------------------------- loading
def load_state_dict(src: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint folder (``*.safetensors``, else ``*.pt`` / ``*.bin``) or file."""
    from safetensors.torch import load_file

    from aki.pretrained import check_safetensors

    src = Path(src)
    release = "pass the release's folder (its weights, config.json and tokenizer files)"
    if not src.exists():
        raise FileNotFoundError(f"official checkpoint {str(src)!r} does not exist; {release}.")
    config = src / "config.json"
    if src.is_dir() and config.is_file() and _read_json(config).get("model_type") == "aki":
        raise ConversionError(f"{str(src)!r} is already an aki model (config.json has model_type 'aki'): there is "
                              "nothing to convert; load it as it is (aki chat / aki eval / from_pretrained).")
    files = [src] if src.is_file() else sorted(src.glob("*.safetensors")) or sorted(
        [*src.glob("*.pt"), *src.glob("*.bin")])
    if not files:
        raise FileNotFoundError(f"no *.safetensors, *.pt or *.bin weights in {str(src)!r}; {release}.")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        if f.suffix == ".safetensors":
            check_safetensors(f)  # a truncated download is named, not "incomplete metadata"
        try:
            if f.suffix == ".safetensors":
                sd.update(load_file(str(f)))
                continue
            obj = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ConversionError(f"cannot read the weights in {str(f)!r} ({type(err).__name__}: {err}); "
                                  "the file is incomplete or not a checkpoint.") from err
        for key in ("model_state_dict", "state_dict", "model"):
            if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                obj = obj[key]
        sd.update(obj)
    return sd


def official_config(
    state_dict: Mapping[str, torch.Tensor],
    vocabulary: ReleaseVocabulary,
    text_config: Mapping[str, Any],
    *,
    vision_config: Mapping[str, Any] | None = None,
    release_config: Mapping[str, Any] | None = None,
    resampler_head_dim: int = 64,
    **config_kwargs: Any,
) -> AkiConfig:
    """An :class:`AkiConfig` for a release checkpoint: its vocabulary, the LLM's own config, the
    tower's and the resampler's shapes, the head's bias, and the MMA rule."""
    release_config = release_config or {}
    sd = _strip(state_dict)
    text = dict(text_config)
    width = int(sd[EMBED + "weight"].shape[1])
    if int(text.get("hidden_size", width)) != width:
        raise ConversionError(f"the text config's hidden_size {text['hidden_size']} does not match the "
                              f"checkpoint's embedding width {width}; pass the LLM's own config.")
    text["vocab_size"] = vocabulary.size
    if release_config.get("pad_token_id") is not None:
        text["pad_token_id"] = int(release_config["pad_token_id"])
    vision = dict(vision_config) if vision_config is not None else find_vision_config(Path("."), release_config, sd)
    resampler = resampler_config_from_weights(sd, resampler_head_dim)
    declared = release_config.get("num_vision_tokens")
    if declared is not None and int(declared) != resampler["num_latents"]:
        raise ConversionError(f"{RELEASE_CONFIG} says num_vision_tokens={declared}, but the resampler has "
                              f"{resampler['num_latents']} latents.")
    return AkiConfig(
        vision_config=vision,
        resampler_config=resampler,
        text_config=text,
        image_token_id=vocabulary.id_of(IMAGE_TOKEN),
        lm_head_bias=True,
        **{"attention_rule": "mma", **config_kwargs},
    )


def _release_processor(src: Path, vocabulary: ReleaseVocabulary, config: AkiConfig):
    """The release's tokenizer with aki's processor around it (None without tokenizer files)."""
    if not any((src / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        return None
    from transformers import AutoTokenizer

    from aki.processing import AkiProcessor, siglip_image_processor

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    except Exception as err:
        raise ConversionError(
            f"cannot build a fast tokenizer from the tokenizer files in {str(src)!r} ({type(err).__name__}: "
            f"{err}); converting tokenizer.model needs the sentencepiece and protobuf packages."
        ) from err
    for token in (IMAGE_TOKEN, END_OF_CHUNK_TOKEN):
        if token in vocabulary.added and tokenizer.convert_tokens_to_ids(token) != vocabulary.id_of(token):
            raise ConversionError(f"the tokenizer maps {token} to {tokenizer.convert_tokens_to_ids(token)}, "
                                  f"but the release's layout puts it at {vocabulary.id_of(token)}.")
    if len(tokenizer) != vocabulary.size:
        raise ConversionError(f"the tokenizer has {len(tokenizer)} ids, the release's vocabulary {vocabulary.size}.")
    return AkiProcessor(image_processor=siglip_image_processor(int(config.vision_config.image_size)),
                        tokenizer=tokenizer, num_image_tokens=config.num_image_tokens)


def convert_official_checkpoint(
    src: str | Path,
    dst: str | Path,
    *,
    text_config: Mapping[str, Any] | str | os.PathLike | None = None,
    vision_config: Mapping[str, Any] | str | os.PathLike | None = None,
    vision: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
    resampler_head_dim: int = 64,
    **config_kwargs: Any,
):
    """Convert the release folder ``src`` into ``dst`` (``save_pretrained`` format, plus the
    processor when ``src`` has tokenizer files). Returns ``(model, processor or None)``.

    ``text_config``: the LLM's config (dict, config.json or its folder) when the release folder
    does not lead to it. ``vision_config``: the tower's config (default: read from the weights).
    ``vision``: a SigLIP folder for checkpoints saved without ``vision_encoder.*``.
    """
    from aki.model.modeling import AkiForConditionalGeneration

    src, dst = Path(src), Path(dst)
    sd = load_state_dict(src)
    folder = src if src.is_dir() else src.parent
    release_config = _read_json(folder / RELEASE_CONFIG) if (folder / RELEASE_CONFIG).is_file() else {}
    vocabulary = release_vocabulary(folder, n_added_rows(sd), release_config)
    text = find_text_config(folder, release_config, text_config)
    vision_cfg = None
    tower = None
    if not any(k.startswith(VISION) for k in _strip(sd)):
        if vision is None:
            raise ConversionError(f"{str(src)!r} holds no vision_encoder.* weights (a training checkpoint?); "
                                  "pass vision=<SigLIP folder> to take the tower from there.")
        from transformers import AutoModel

        from aki.pretrained import resolve_pretrained

        tower = AutoModel.from_pretrained(resolve_pretrained(vision, "vision tower", key="--vision",
                                                             fix="pass a local SigLIP folder as --vision"))
        tower = getattr(tower, "vision_model", tower)
        vision_cfg = tower.config.to_dict()
    else:
        vision_cfg = find_vision_config(folder, release_config, sd, vision_config)
    config = official_config(sd, vocabulary, text, vision_config=vision_cfg, release_config=release_config,
                             resampler_head_dim=resampler_head_dim, **config_kwargs)
    converted = convert_official_state_dict(sd, vocabulary.original_size)
    if tower is not None:
        converted.update({"vision_tower." + k: v for k, v in tower.state_dict().items()})
    processor = _release_processor(folder, vocabulary, config)
    model = AkiForConditionalGeneration(config)
    result = model.load_state_dict(converted, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ConversionError(f"converted weights do not fit: missing {result.missing_keys[:8]}, "
                              f"unexpected {result.unexpected_keys[:8]}")
    if dtype is not None:
        model = model.to(dtype)
    if processor is not None:
        # stop at the family's end of turn (the release's <|endoftext|> / <|end|>), pad with <pad>
        from aki.model.generation import generation_config_for

        model.generation_config = generation_config_for(processor)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    if processor is not None:
        processor.save_pretrained(dst)
    return model, processor


__all__ = [
    "ConversionError",
    "ReleaseVocabulary",
    "added_tokens",
    "convert_official_checkpoint",
    "convert_official_state_dict",
    "find_text_config",
    "find_vision_config",
    "load_state_dict",
    "official_config",
    "release_vocabulary",
    "resampler_config_from_weights",
    "vision_config_from_weights",
]
