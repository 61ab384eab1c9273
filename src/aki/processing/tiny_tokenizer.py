"""Tiny offline tokenizers for tests, examples and the quickstart.

Real backbone tokenizers cannot be downloaded here, so each family gets a small byte-level BPE
tokenizer trained in well under a second on a corpus you pass (or a built-in English one). It
carries the family's control tokens (so its chat template renders and tokenizes as the real one
would), plus AKI's ``<pad>``, ``<image>`` and ``<|endofchunk|>`` as the last three ids (as in the
official release, where they are appended to the original vocabulary).

Byte-level BPE can encode every string, so any corpus character is representable; training is
deterministic (the BPE trainer breaks ties by pair, and every byte is in the initial alphabet).
"""

from __future__ import annotations

from collections.abc import Iterable

from aki.processing.chat_templates import get_chat_template
from aki.processing.families import (
    END_OF_CHUNK_TOKEN,
    FAMILIES,
    IMAGE_TOKEN,
    PAD_TOKEN,
    normalize_family,
)

AKI_EXTRA_TOKENS = (PAD_TOKEN, IMAGE_TOKEN, END_OF_CHUNK_TOKEN)

BUILTIN_CORPUS: tuple[str, ...] = (
    "A chat between a curious user and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "What is in the image? There is a red cube to the left of a blue sphere.",
    "How many objects are there in the picture? There are three objects on the table.",
    "Answer the question using a single word or phrase. What color is the car? Red.",
    "Answer with the option's letter from the given choices directly. Options: A. yes B. no",
    "Which object is closer to the camera, the chair or the lamp? The chair is closer.",
    "Describe the scene in detail. A small green triangle sits above a large yellow circle.",
    "Is there a dog in the image? Please answer yes or no. No, there is a cat on the sofa.",
    "Provide a short description for this region. A white plate with a slice of bread.",
    "The man is riding a bicycle down a busy street while people walk on the sidewalk.",
    "Two children are playing with a ball in the park near a large tree and a bench.",
    "A photo of a kitchen with a wooden table, four chairs, and a window over the sink.",
    "Count the squares, circles and triangles: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10.",
    "Where is the purple square? It is below the orange circle, at the bottom right.",
    "Please look at the picture carefully and tell me what you see; be precise and brief.",
)
"""A small English corpus with chat, VQA and caption phrasing (default training text)."""


def build_tiny_tokenizer(
    family: str = "llama3",
    corpus: Iterable[str] | None = None,
    vocab_size: int = 512,
    *,
    model_max_length: int = 4096,
):
    """Train a small byte-level BPE ``PreTrainedTokenizerFast`` for ``family``, offline.

    ``corpus``: an iterable of strings (default :data:`BUILTIN_CORPUS`). ``vocab_size`` bounds
    the learned vocabulary (bytes + merges + special tokens); the trainer stops earlier when
    the corpus has no more pairs to merge. The returned tokenizer has the family's chat template
    and its ``bos``/``eos``/``unk`` tokens, ``pad_token="<pad>"``, and ``<image>`` /
    ``<|endofchunk|>`` as special tokens.
    """
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    spec = FAMILIES[normalize_family(family)]
    texts = list(BUILTIN_CORPUS if corpus is None else corpus)
    if not all(isinstance(t, str) for t in texts):
        bad = next(t for t in texts if not isinstance(t, str))
        raise TypeError(f"corpus must be an iterable of strings; found {type(bad).__name__}.")
    n_fixed = len(spec.specials) + len(spec.plain_added) + len(AKI_EXTRA_TOKENS)
    if vocab_size < 256 + n_fixed:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: byte-level BPE needs 256 byte tokens plus "
            f"{n_fixed} special tokens; use at least {256 + n_fixed}."
        )

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(spec.plain_added) - len(AKI_EXTRA_TOKENS),
        min_frequency=2,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in spec.specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer, length=len(texts))
    # Appended after training so they take the last ids, in a fixed order.
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in spec.plain_added])
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in AKI_EXTRA_TOKENS])

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=spec.bos,
        eos_token=spec.eos,
        unk_token=spec.unk,
        pad_token=PAD_TOKEN,
        extra_special_tokens={"image_token": IMAGE_TOKEN, "endofchunk_token": END_OF_CHUNK_TOKEN},
        model_max_length=model_max_length,
        padding_side="right",
        chat_template=get_chat_template(spec.name),
    )
    tokenizer.init_kwargs["aki_family"] = spec.name
    return tokenizer


__all__ = ["AKI_EXTRA_TOKENS", "BUILTIN_CORPUS", "build_tiny_tokenizer"]
