"""Backbone families: the special tokens each decoder family's tokenizer carries.

The processor needs to know a family only to pick its chat template and the tokens that end an
assistant turn; everything about *where* segments start and stop comes from rendering the
template (see :mod:`aki.processing.segmenter`), never from these tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aki.constants import END_OF_CHUNK_TOKEN, IMAGE_TOKEN, PAD_TOKEN


@dataclass(frozen=True)
class FamilySpec:
    """Special tokens of one backbone family, named as in the original tokenizers."""

    name: str
    bos: str | None
    eos: str
    unk: str | None
    specials: tuple[str, ...]
    """Control tokens of the family (special: skipped by ``decode(skip_special_tokens=True)``)."""
    stop_tokens: tuple[str, ...]
    """Tokens that end an assistant turn (first = the one the chat template writes)."""
    plain_added: tuple[str, ...] = field(default=())
    """Atomic tokens that are not special (Qwen3's ``<think>`` tags)."""
    detect: tuple[str, ...] = field(default=())
    """Tokens whose presence in a vocabulary identifies the family (all must be present)."""


FAMILIES: dict[str, FamilySpec] = {
    "phi3": FamilySpec(
        name="phi3",
        bos="<s>",
        eos="<|endoftext|>",
        unk="<unk>",
        specials=("<unk>", "<s>", "</s>", "<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"),
        stop_tokens=("<|endoftext|>", "<|end|>"),
        detect=("<|assistant|>", "<|user|>", "<|end|>"),
    ),
    "llama3": FamilySpec(
        name="llama3",
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        unk=None,
        specials=(
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|eom_id|>",
            "<|finetune_right_pad_id|>",
        ),
        stop_tokens=("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"),
        detect=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    ),
    "qwen3": FamilySpec(
        name="qwen3",
        bos=None,
        eos="<|im_end|>",
        unk=None,
        specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        stop_tokens=("<|im_end|>", "<|endoftext|>"),
        plain_added=("<think>", "</think>"),
        detect=("<|im_start|>", "<|im_end|>", "<think>"),
    ),
    "qwen2": FamilySpec(
        name="qwen2",
        bos=None,
        eos="<|im_end|>",
        unk=None,
        specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        stop_tokens=("<|im_end|>", "<|endoftext|>"),
        detect=("<|im_start|>", "<|im_end|>"),
    ),
}
"""Known families, most specific detection first (qwen3 before qwen2)."""

FAMILY_ALIASES = {
    "phi": "phi3",
    "phi-3": "phi3",
    "phi3.5": "phi3",
    "llama": "llama3",
    "llama-3": "llama3",
    "qwen": "qwen2",
    "qwen2.5": "qwen2",
}


def normalize_family(family: str) -> str:
    """Canonical family name (``"llama"`` -> ``"llama3"``); raise on an unknown one."""
    key = family.strip().lower()
    key = FAMILY_ALIASES.get(key, key)
    if key not in FAMILIES:
        raise ValueError(
            f"unknown backbone family {family!r}; choose one of {sorted(FAMILIES)} "
            f"(aliases: {sorted(FAMILY_ALIASES)}), or pass chat_template= explicitly."
        )
    return key


def detect_family(tokenizer) -> str | None:
    """Guess the family from the control tokens in a tokenizer's vocabulary (None if unknown)."""
    vocab = tokenizer.get_vocab()
    for spec in FAMILIES.values():
        if spec.detect and all(tok in vocab for tok in spec.detect):
            return spec.name
    return None


__all__ = [
    "END_OF_CHUNK_TOKEN",
    "FAMILIES",
    "IMAGE_TOKEN",
    "PAD_TOKEN",
    "FamilySpec",
    "detect_family",
    "normalize_family",
]
