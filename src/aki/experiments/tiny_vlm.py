"""A small AKI for CPU experiments: a tokenizer trained on the data, a SigLIP vision tower (the
project's pretrained one, frozen as AKI freezes SigLIP, or a random one that pre-training
trains), a resampler and a small Llama-style decoder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class TinyVLMSize:
    """Sizes of the experiment model (about 1.5 M parameters with the defaults). The ``vision_*``,
    ``image_size`` and ``patch_size`` fields apply only to a tower built from scratch; a pretrained
    tower brings its own (see :func:`build_tiny_vlm`)."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 96
    vision_layers: int = 2
    vision_heads: int = 4
    num_image_tokens: int = 16
    resampler_depth: int = 2
    resampler_heads: int = 4
    resampler_head_dim: int = 24
    resampler_region_prior: float = 0.0
    llm_hidden: int = 128
    llm_layers: int = 4
    llm_heads: int = 4
    llm_kv_heads: int = 2
    llm_intermediate: int = 384
    vocab_size: int = 1024
    family: str = "llama3"
    # Std of the LLM's and resampler's initial weights (transformers' ``initializer_range``).
    llm_init_std: float = 0.02


def load_tower(path: str | Path):
    """The ``SiglipVisionModel`` saved in ``path``, with a clear error when there is none."""
    from transformers import SiglipVisionModel

    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "preprocessor_config.json").is_file():
        raise FileNotFoundError(
            f"{path} holds no vision tower (config.json and preprocessor_config.json are needed); "
            "make one with `aki pretrain-vision --out DIR`, or leave the tower out to train one from scratch."
        )
    return SiglipVisionModel.from_pretrained(path).eval()


def load_language_model(path: str | Path):
    """The causal LM saved in ``path`` (with its tokenizer), with a clear error when there is none or
    its tokenizer lacks the image tokens (a tokenizer from ``aki pretrain-llm`` has them)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aki.constants import END_OF_CHUNK_TOKEN, IMAGE_TOKEN

    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "tokenizer_config.json").is_file():
        raise FileNotFoundError(
            f"{path} holds no language model with its tokenizer (config.json and tokenizer_config.json are "
            "needed); make one with `aki pretrain-llm --out DIR`, or leave it out to train a decoder from scratch."
        )
    vocab = AutoTokenizer.from_pretrained(path).get_vocab()
    missing = [t for t in (IMAGE_TOKEN, END_OF_CHUNK_TOKEN) if t not in vocab]
    if missing:
        raise ValueError(f"the tokenizer in {path} lacks {', '.join(missing)}; a tiny VLM needs a language "
                         "model whose tokenizer has them, such as one from `aki pretrain-llm`.")
    return AutoModelForCausalLM.from_pretrained(path).eval()


# TinyVLMSize's decoder fields and the transformers config entry each one sets.
_DECODER_FIELDS = {"llm_hidden": "hidden_size", "llm_layers": "num_hidden_layers", "llm_heads": "num_attention_heads",
                   "llm_kv_heads": "num_key_value_heads", "llm_intermediate": "intermediate_size",
                   "vocab_size": "vocab_size", "llm_init_std": "initializer_range"}


def check_size_applies(size: TinyVLMSize, lm_config, path: str | Path) -> None:
    """A loaded decoder fixes its own shape, so a decoder field of ``size`` changed from its default to
    another value than the decoder's would be silently unused: refuse it, naming the fields."""
    default = TinyVLMSize()
    unused = [f"{name}={getattr(size, name)} (the decoder has {getattr(lm_config, key, None)})"
              for name, key in _DECODER_FIELDS.items()
              if getattr(size, name) != getattr(default, name) and getattr(size, name) != getattr(lm_config, key, None)]
    if unused:
        raise ValueError(f"the language model in {path} brings its own shape and weights, so TinyVLMSize's "
                         f"{', '.join(unused)} would not apply: leave those fields at their defaults, or build "
                         "a random decoder (no language model; `aki quickstart --random-language-model`).")


def tower_image_processor(path: str | Path):
    """The SigLIP image processor saved beside a tower (``preprocessor_config.json``; also the
    older ``AkiImageProcessor`` form)."""
    from aki.processing.processor import _siglip_from_dict

    return _siglip_from_dict(json.loads((Path(path) / "preprocessor_config.json").read_text()))


def corpus_from_synth(data_dir: str | Path) -> Iterator[str]:
    """Every text the model will read in training: captions and conversation turns."""
    train = Path(data_dir) / "train"
    with open(train / "pt.jsonl", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["caption"]
    with open(train / "sft.jsonl", encoding="utf-8") as f:
        for line in f:
            for turn in json.loads(line)["conversations"]:
                yield turn["value"].replace("<image>", "")


def build_tiny_vlm(data_dir: str | Path, size: TinyVLMSize, seed: int = 0, out_dir: str | Path | None = None,
                   vision_tower: str | Path | None = None, language_model: str | Path | None = None):
    """``(model, processor)`` for the synthetic data in ``data_dir``; saved to ``out_dir`` if given.

    ``vision_tower``: a folder holding a ``SiglipVisionModel`` (``save_pretrained``, e.g. from
    ``aki pretrain-vision``) and its ``preprocessor_config.json``. Its weights, its config and its
    image preprocessing are used as they are (``size``'s vision fields are then not used); the
    model is marked ``freeze_vision``, as AKI freezes its pretrained SigLIP. Without it the tower
    is random, built from ``size``, and left trainable.

    ``language_model``: a folder holding a causal LM and its tokenizer (``save_pretrained``, e.g. from
    ``aki pretrain-llm``). Its tokenizer, config and weights are used as they are (``size``'s ``llm_*``
    and ``vocab_size`` fields are then not used, and no tokenizer is trained on ``data_dir``). Without
    it the decoder is random, built from ``size``.
    """
    from aki.model import AkiConfig
    from aki.processing import AkiImageProcessor, AkiProcessor
    from aki.processing.tiny_tokenizer import build_tiny_tokenizer
    from aki.testing import build_seeded

    lm = load_language_model(language_model) if language_model is not None else None
    if lm is not None:
        check_size_applies(size, lm.config, language_model)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(language_model)
    else:
        tokenizer = build_tiny_tokenizer(size.family, corpus=list(corpus_from_synth(data_dir)),
                                         vocab_size=size.vocab_size)
    tower = load_tower(vision_tower) if vision_tower is not None else None
    if tower is not None:
        vision = tower.config.to_dict()
        image_processor = tower_image_processor(vision_tower)
    else:
        vision = {
            "model_type": "siglip_vision_model",
            "image_size": size.image_size,
            "patch_size": size.patch_size,
            "hidden_size": size.vision_hidden,
            "intermediate_size": size.vision_hidden * 4,
            "num_hidden_layers": size.vision_layers,
            "num_attention_heads": size.vision_heads,
        }
        image_processor = AkiImageProcessor(size=size.image_size)
    processor = AkiProcessor(image_processor=image_processor, tokenizer=tokenizer,
                             num_image_tokens=size.num_image_tokens, family=size.family)
    text = lm.config.to_dict() if lm is not None else {
        "model_type": "llama",
        "vocab_size": len(tokenizer),
        "hidden_size": size.llm_hidden,
        "intermediate_size": size.llm_intermediate,
        "num_hidden_layers": size.llm_layers,
        "num_attention_heads": size.llm_heads,
        "num_key_value_heads": size.llm_kv_heads,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": False,
        "initializer_range": size.llm_init_std,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    resampler = {"num_latents": size.num_image_tokens, "depth": size.resampler_depth,
                 "heads": size.resampler_heads, "head_dim": size.resampler_head_dim, "ff_mult": 4,
                 "region_prior": size.resampler_region_prior}
    config = AkiConfig(vision_config=vision, resampler_config=resampler, text_config=text,
                       image_token_id=processor.image_token_id, attention_rule="causal",
                       freeze_vision=tower is not None)
    model = build_seeded(config, seed)
    if tower is not None:
        model.vision_tower.load_state_dict(tower.state_dict())
    if lm is not None:
        model.language_model.load_state_dict(lm.state_dict())
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        processor.save_pretrained(out)
        (out / "tiny_vlm_size.json").write_text(json.dumps(asdict(size), indent=2))
    return model, processor
