"""``AkiProcessor``: prompts, images and conversations to model inputs with segment labels.

Output of every encoding method (``BatchFeature``, tensors ``[B, L]`` unless noted):

- ``input_ids``: each ``<image>`` marker expanded to ``num_image_tokens`` copies of
  ``image_token_id``, so positions line up with the LLM's embedding sequence;
- ``attention_mask``: 1 for real tokens, 0 for padding;
- ``segments``: :class:`aki.masks.Segment` per token, derived from the chat template's structure
  (full rules in :mod:`aki.processing.segmenter`): PAD for padding; IMAGE for every expanded
  image token; QUERY from just after a prompt block's first image up to and including the
  assistant generation marker; ANSWER for each assistant answer and its end-of-turn token, and
  for caption..EOS in pre-training; TEXT for everything else (BOS, system, role headers, text
  before the first image, prompt blocks without an image). A prompt block starts after an answer.
- ``labels`` (when a sample holds an answer): the token id on ANSWER tokens, -100 elsewhere;
- ``pixel_values`` ``[N, 3, H, W]``: every image of the batch, sample by sample, in marker
  order; omitted when the batch has no image.

``max_length`` counts tokens *before* image expansion, each ``<image>`` marker as one token (the
official convention: PT 128, SFT 512); a returned row is longer by ``num_image_tokens - 1`` per
image. Prompts are never cut: ``__call__`` raises :class:`PromptTooLongError` for a prompt over
the limit; ``encode_conversations`` cuts only inside the last answer(s) that fit (dropping later
turns whole) and raises when not even the first prompt plus one answer token fits;
``encode_captions`` cuts the caption at its end (I&T) or shortens it before the image (T&I).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from aki.constants import IGNORE_INDEX
from aki.masks import Segment
from aki.processing.chat_templates import (
    CAPTION_FORMATS,
    CHAT_TEMPLATES,
    caption_text,
    render_chat,
    validate_messages,
)
from aki.processing.errors import ImageCountError, PromptTooLongError
from aki.processing.families import (
    END_OF_CHUNK_TOKEN,
    FAMILIES,
    IMAGE_TOKEN,
    detect_family,
    normalize_family,
)
from aki.processing.images import AkiImageProcessor
from aki.processing.segmenter import TemplateStructure, tokenize_with_segments

PROCESSOR_CONFIG_NAME = "processor_config.json"

Messages = Sequence[Mapping[str, Any]]


class AkiProcessor:
    """Tokenizer + image processor + chat template, producing inputs with segment labels.

    ``family`` (``phi3``, ``llama3``, ``qwen2``, ``qwen3``) picks the chat template and the
    stop tokens; when omitted it is detected from the tokenizer's vocabulary. ``chat_template``
    overrides the family's template (it must append the assistant header as its generation
    prompt and end assistant turns with an end-of-turn token; checked at construction).
    """

    attributes = ("image_processor", "tokenizer")

    def __init__(
        self,
        image_processor: AkiImageProcessor | None = None,
        tokenizer=None,
        num_image_tokens: int = 144,
        chat_template: str | None = None,
        family: str | None = None,
    ) -> None:
        if tokenizer is None:
            raise ValueError("AkiProcessor needs a tokenizer (e.g. aki.processing.build_tiny_tokenizer('phi3')).")
        if int(num_image_tokens) < 1:
            raise ValueError(f"num_image_tokens must be >= 1; got {num_image_tokens}.")
        self.tokenizer = tokenizer
        self.image_processor = image_processor if image_processor is not None else AkiImageProcessor()
        self.num_image_tokens = int(num_image_tokens)
        self.family = normalize_family(family) if family is not None else detect_family(tokenizer)
        if chat_template is None:
            chat_template = CHAT_TEMPLATES.get(self.family) if self.family else tokenizer.chat_template
        if not chat_template:
            raise ValueError(
                "no chat template: pass family= (one of "
                f"{sorted(FAMILIES)}) or chat_template=, or use a tokenizer that has one."
            )
        self.chat_template = chat_template
        vocab = tokenizer.get_vocab()
        if IMAGE_TOKEN not in vocab:
            raise ValueError(
                f"the tokenizer has no {IMAGE_TOKEN} token; call aki.processing.add_aki_tokens("
                "tokenizer) (and resize the model's embeddings) before building the processor."
            )
        if tokenizer.pad_token_id is None:
            raise ValueError(
                "the tokenizer has no pad token; call aki.processing.add_aki_tokens(tokenizer) "
                "(it adds <pad>) before building the processor."
            )
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError(
                "AkiProcessor needs a fast tokenizer (its offset mapping locates the segments); "
                "load it with AutoTokenizer.from_pretrained(..., use_fast=True)."
            )
        self.structure = TemplateStructure.probe(chat_template, self._special_tokens())
        self._image_token_id = int(vocab[IMAGE_TOKEN])
        self._eos_token_ids = self._find_eos_token_ids(vocab)

    # ----------------------------------------------------------------- token ids
    def _special_tokens(self) -> dict[str, str | None]:
        tok = self.tokenizer
        return {
            "bos_token": tok.bos_token,
            "eos_token": tok.eos_token,
            "unk_token": tok.unk_token,
            "pad_token": tok.pad_token,
        }

    @property
    def image_token(self) -> str:
        return IMAGE_TOKEN

    @property
    def image_token_id(self) -> int:
        """Id of ``<image>``: every expanded image position holds it."""
        return self._image_token_id

    @property
    def endofchunk_token_id(self) -> int | None:
        return self.tokenizer.get_vocab().get(END_OF_CHUNK_TOKEN)

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def eos_token_ids(self) -> list[int]:
        """Ids that end an assistant turn: the template's end-of-turn token first, then the
        family's other stop tokens and the tokenizer's EOS (e.g. ``<|endoftext|>``, ``<|end|>``
        for phi3)."""
        return list(self._eos_token_ids)

    def _find_eos_token_ids(self, vocab: Mapping[str, int]) -> list[int]:
        names = [self.structure.end_of_turn]
        if self.family:
            names += list(FAMILIES[self.family].stop_tokens)
        names.append(self.tokenizer.eos_token)
        ids: list[int] = []
        for name in names:
            tid = vocab.get(name) if name else None
            if tid is not None and tid not in ids:
                ids.append(int(tid))
        return ids

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "segments", "pixel_values"]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(family={self.family!r}, num_image_tokens={self.num_image_tokens}, "
            f"image_processor={self.image_processor!r}, tokenizer={type(self.tokenizer).__name__}"
            f"(vocab={len(self.tokenizer)}))"
        )

    # ----------------------------------------------------------------- templates
    def apply_chat_template(
        self,
        messages: Messages | Sequence[Messages],
        add_generation_prompt: bool = True,
        tokenize: bool = False,
        **kwargs: Any,
    ):
        """Render messages (or a list of conversations) to prompt string(s).

        One ``<image>`` marker per ``{"type": "image"}`` item. With ``tokenize=True`` the
        prompt(s) are encoded with :meth:`__call__`; images come from ``images=`` or from the
        items' ``"image"`` fields.
        """
        batched = bool(messages) and not isinstance(messages[0], Mapping)
        conversations = list(messages) if batched else [messages]
        texts = []
        for conv in conversations:
            validate_messages(conv)
            texts.append(
                render_chat(
                    conv,
                    self.chat_template,
                    add_generation_prompt=add_generation_prompt,
                    special_tokens=self._special_tokens(),
                )
            )
        if not tokenize:
            return texts if batched else texts[0]
        images = kwargs.pop("images", None)
        if images is None:
            images = [_images_in(conv) for conv in conversations]
        return self(text=texts, images=images, **kwargs)

    # ----------------------------------------------------------------- encoding
    def _encode_text(self, text: str) -> tuple[list[int], list[int]]:
        chars = self.structure.char_segments(text)
        return tokenize_with_segments(self.tokenizer, text, chars, self.image_token_id)

    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        images=None,
        padding_side: str = "left",
        max_length: int | None = None,
        return_tensors: str | None = "pt",
        **_: Any,
    ):
        """Encode prompt string(s) with ``<image>`` markers and their images (generation).

        Left padding by default. ``labels`` are added when a text holds an assistant answer.
        A prompt longer than ``max_length`` raises :class:`PromptTooLongError`.
        """
        if text is None:
            raise ValueError("pass text= (a prompt string with one <image> marker per image, or a list).")
        texts = [text] if isinstance(text, str) else list(text)
        encoded = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} must be a string; got {type(t).__name__}.")
            ids, segs = self._encode_text(t)
            if max_length is not None and len(ids) > max_length:
                raise PromptTooLongError(
                    f"sample {i}: the prompt has {len(ids)} tokens (each <image> counted once) but "
                    f"max_length={max_length}; shorten the text or raise max_length (prompts are "
                    "never cut, so no image or question is lost).",
                    sample_index=i,
                    length=len(ids),
                    max_length=max_length,
                )
            encoded.append((ids, segs))
        return self._collate(encoded, images, padding_side=padding_side, return_tensors=return_tensors)

    def encode_conversations(
        self,
        conversations: Messages | Sequence[Messages],
        images=None,
        add_generation_prompt: bool = False,
        padding_side: str = "right",
        max_length: int | None = None,
        return_tensors: str | None = "pt",
    ):
        """Training batch from conversations: labels on ANSWER tokens only (-100 elsewhere).

        ``images``: per conversation, its images in marker order (default: the items'
        ``"image"`` fields). A sample over ``max_length`` is cut inside its last answer that
        fits; one whose first prompt does not fit raises :class:`PromptTooLongError`.
        """
        batched = bool(conversations) and not isinstance(conversations[0], Mapping)
        convs = list(conversations) if batched else [conversations]
        if images is not None and not batched:
            images = [images]
        texts = self.apply_chat_template(convs, add_generation_prompt=add_generation_prompt)
        encoded = []
        for i, t in enumerate(texts):
            ids, segs = self._encode_text(t)
            if max_length is not None and len(ids) > max_length:
                ids, segs = _cut_in_answer(ids, segs, max_length, i)
            encoded.append((ids, segs))
        if images is None:
            images = [_images_in(conv) for conv in convs]
        return self._collate(
            encoded, images, padding_side=padding_side, return_tensors=return_tensors, labels=True
        )

    def encode_captions(
        self,
        captions: str | Sequence[str],
        images=None,
        order: str = "I&T",
        padding_side: str = "right",
        max_length: int | None = 128,
        return_tensors: str | None = "pt",
    ):
        """Pre-training batch: ``{bos}<image>{caption}<|endofchunk|>{eos}`` (``order="I&T"``) or
        ``{bos}{caption}<image><|endofchunk|>{eos}`` (``"T&I"``); everything after BOS except
        the image is ANSWER (labelled). Over ``max_length``: I&T is cut at the end, T&I loses
        caption tokens just before the image (the image always stays)."""
        if order not in CAPTION_FORMATS:
            raise ValueError(f"order must be one of {sorted(CAPTION_FORMATS)}; got {order!r}.")
        caps = [captions] if isinstance(captions, str) else list(captions)
        if images is not None and not isinstance(images, (list, tuple)):
            images = [images]
        bos = self.tokenizer.bos_token
        encoded = []
        for i, cap in enumerate(caps):
            if IMAGE_TOKEN in cap:
                raise ValueError(f"caption {i} contains the {IMAGE_TOKEN} marker; remove it from the caption text.")
            text = caption_text(cap, order, bos, self.tokenizer.eos_token)
            chars = [int(Segment.ANSWER)] * len(text)
            head = len(bos or "")
            chars[:head] = [int(Segment.TEXT)] * head
            k = text.index(IMAGE_TOKEN, head)
            chars[k : k + len(IMAGE_TOKEN)] = [int(Segment.IMAGE)] * len(IMAGE_TOKEN)
            ids, segs = tokenize_with_segments(self.tokenizer, text, chars, self.image_token_id)
            if max_length is not None and len(ids) > max_length:
                ids, segs = _cut_caption(ids, segs, max_length, i)
            encoded.append((ids, segs))
        if images is not None and len(images) == len(caps):
            images = [im if isinstance(im, (list, tuple)) else [im] for im in images]
        return self._collate(
            encoded, images, padding_side=padding_side, return_tensors=return_tensors, labels=True
        )

    # ----------------------------------------------------------------- batching
    def _collate(
        self,
        encoded: list[tuple[list[int], list[int]]],
        images,
        *,
        padding_side: str,
        return_tensors: str | None,
        labels: bool | None = None,
    ):
        from transformers import BatchFeature

        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right'; got {padding_side!r}.")
        counts = [sum(1 for s in segs if s == Segment.IMAGE) for _, segs in encoded]
        groups = _group_images(images, counts)
        n_img, img_id, pad = self.num_image_tokens, self.image_token_id, self.pad_token_id
        rows = []
        for ids, segs in encoded:
            out_ids: list[int] = []
            out_segs: list[int] = []
            for tid, seg in zip(ids, segs, strict=True):
                reps = n_img if seg == Segment.IMAGE else 1
                out_ids.extend([img_id if seg == Segment.IMAGE else tid] * reps)
                out_segs.extend([seg] * reps)
            rows.append((out_ids, out_segs))
        if labels is None:
            labels = any(Segment.ANSWER in segs for _, segs in rows)
        length = max((len(ids) for ids, _ in rows), default=0)
        data: dict[str, Any] = {"input_ids": [], "attention_mask": [], "segments": []}
        if labels:
            data["labels"] = []
        for ids, segs in rows:
            n_pad = length - len(ids)
            lab = [t if s == Segment.ANSWER else IGNORE_INDEX for t, s in zip(ids, segs, strict=True)]
            parts = {
                "input_ids": (ids, pad),
                "attention_mask": ([1] * len(ids), 0),
                "segments": (segs, int(Segment.PAD)),
                "labels": (lab, IGNORE_INDEX),
            }
            for key in data:
                values, fill = parts[key]
                filler = [fill] * n_pad
                data[key].append(filler + values if padding_side == "left" else values + filler)
        flat = [img for group in groups for img in group]
        if flat:
            data["pixel_values"] = self.image_processor(flat)["pixel_values"]
        if return_tensors == "pt":
            for key in ("input_ids", "attention_mask", "segments", "labels"):
                if key in data:
                    data[key] = torch.tensor(data[key], dtype=torch.long).reshape(len(rows), length)
            return BatchFeature(data)
        return BatchFeature(data, tensor_type=return_tensors)

    # ----------------------------------------------------------------- decoding
    def _collapse_images(self, ids) -> list[int]:
        """Each run of ``num_image_tokens`` image ids back to one ``<image>`` marker."""
        if torch.is_tensor(ids):
            ids = ids.tolist()
        out: list[int] = []
        run = 0
        for tid in ids:
            if tid == self.image_token_id:
                if run % self.num_image_tokens == 0:
                    out.append(tid)
                run += 1
            else:
                run = 0
                out.append(tid)
        return out

    def decode(self, token_ids, skip_special_tokens: bool = False, **kwargs: Any) -> str:
        """Decode one sequence; expanded image tokens show as one ``<image>`` per image."""
        return self.tokenizer.decode(
            self._collapse_images(token_ids), skip_special_tokens=skip_special_tokens, **kwargs
        )

    def batch_decode(self, sequences, skip_special_tokens: bool = False, **kwargs: Any) -> list[str]:
        """Decode a batch (``[B, L]`` tensor or list of id lists)."""
        if torch.is_tensor(sequences):
            sequences = sequences.tolist()
        return [self.decode(seq, skip_special_tokens=skip_special_tokens, **kwargs) for seq in sequences]

    # ----------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "processor_class": type(self).__name__,
            "num_image_tokens": self.num_image_tokens,
            "family": self.family,
            "chat_template": self.chat_template,
        }

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> list[str]:
        """Write the tokenizer, ``preprocessor_config.json`` and ``processor_config.json``."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        files = list(self.tokenizer.save_pretrained(str(path), **kwargs))
        files.append(str(self.image_processor.save_pretrained(path)))
        cfg = path / PROCESSOR_CONFIG_NAME
        cfg.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        files.append(str(cfg))
        return files

    @classmethod
    def from_pretrained(cls, pretrained: str | os.PathLike, **kwargs: Any) -> AkiProcessor:
        """Load from a directory written by :meth:`save_pretrained`, or a hub id (cached or online).

        A directory without ``processor_config.json`` (e.g. a released checkpoint) works too:
        the family is detected from the tokenizer and the image size defaults to 384. Keyword
        arguments override the saved ``num_image_tokens``, ``family`` and ``chat_template``.
        """
        from transformers import AutoTokenizer

        path = _resolve(pretrained)
        config: dict[str, Any] = {}
        cfg_file = path / PROCESSOR_CONFIG_NAME
        if cfg_file.is_file():
            config = json.loads(cfg_file.read_text())
        config.pop("processor_class", None)
        config.update(kwargs)
        import aki.model.configuration  # noqa: F401  (registers the "aki" config type for AutoTokenizer)

        tokenizer = AutoTokenizer.from_pretrained(str(path))
        if (path / AkiImageProcessor.config_name).is_file():
            image_processor = AkiImageProcessor.from_pretrained(path)
        else:
            image_processor = AkiImageProcessor()
        return cls(
            image_processor=image_processor,
            tokenizer=tokenizer,
            num_image_tokens=config.get("num_image_tokens", 144),
            chat_template=config.get("chat_template"),
            family=config.get("family"),
        )


# --------------------------------------------------------------------- helpers
def _images_in(conversation: Messages) -> list:
    """The ``"image"`` fields of a conversation's image items, in order (missing ones skipped)."""
    found = []
    for message in conversation:
        content = message.get("content")
        if isinstance(content, str) or content is None:
            continue
        for item in content:
            if item.get("type") == "image" and item.get("image") is not None:
                found.append(item["image"])
    return found


def _fix_hint() -> str:
    return (
        "put exactly one <image> marker in the text per image (apply_chat_template writes one per "
        "{'type': 'image'} item), or pass as many images as the text has markers."
    )


def _group_images(images, counts: list[int]) -> list[list]:
    """Split ``images`` into one list per sample and check them against the marker counts."""
    n = len(counts)
    if images is None:
        groups: list[list] = [[] for _ in counts]
    else:
        if not isinstance(images, (list, tuple)):
            images = [images]
        nested = len(images) > 0 and all(isinstance(x, (list, tuple)) for x in images)
        if nested:
            if len(images) != n:
                raise ImageCountError(
                    f"images holds {len(images)} per-sample lists but there are {n} samples; "
                    "pass one list of images per text."
                )
            groups = [list(x) for x in images]
        elif n == 1:
            groups = [list(images)]
        else:
            if len(images) != sum(counts):
                raise ImageCountError(
                    f"{len(images)} images were given for {n} samples whose texts hold "
                    f"{counts} <image> markers (total {sum(counts)}); {_fix_hint()}"
                )
            groups, start = [], 0
            for c in counts:
                groups.append(list(images[start : start + c]))
                start += c
    for i, (group, count) in enumerate(zip(groups, counts, strict=True)):
        if len(group) != count:
            raise ImageCountError(
                f"sample {i}: the text has {count} <image> marker(s) but {len(group)} image(s) "
                f"were given; {_fix_hint()}"
            )
    return groups


def _cut_in_answer(ids: list[int], segs: list[int], max_length: int, index: int):
    """Keep at most ``max_length`` tokens, ending inside an answer (later turns dropped whole)."""
    cut = max_length
    while cut > 0 and segs[cut - 1] != Segment.ANSWER:
        cut -= 1
    if cut == 0:
        prompt_len = next((k for k, s in enumerate(segs) if s == Segment.ANSWER), len(segs))
        raise PromptTooLongError(
            f"sample {index}: the prompt before the first answer has {prompt_len} tokens (each "
            f"<image> counted once), leaving no room for an answer within max_length={max_length}; "
            "skip this sample or raise max_length (prompts and images are never cut).",
            sample_index=index,
            length=len(ids),
            max_length=max_length,
        )
    return ids[:cut], segs[:cut]


def _cut_caption(ids: list[int], segs: list[int], max_length: int, index: int):
    """Shorten a caption sample to ``max_length`` tokens without touching the image or BOS."""
    img = segs.index(Segment.IMAGE)
    excess = len(ids) - max_length
    start = img
    while start > 0 and segs[start - 1] == Segment.ANSWER:
        start -= 1
    if start == img:  # I&T: the caption follows the image; cut at the end, keep a caption token
        if max_length >= img + 2:
            return ids[:max_length], segs[:max_length]
    elif img - start > excess:  # T&I: drop caption tokens just before the image, keep one
        return ids[: img - excess] + ids[img:], segs[: img - excess] + segs[img:]
    raise PromptTooLongError(
        f"caption {index}: max_length={max_length} cannot hold the image marker, the "
        "end-of-chunk token and one caption token; raise max_length.",
        sample_index=index,
        length=len(ids),
        max_length=max_length,
    )


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _resolve(pretrained: str | os.PathLike) -> Path:
    """A local directory, or a hub snapshot (cache first); a clear error when neither exists."""
    path = Path(pretrained).expanduser()
    if path.is_dir():
        return path
    name = os.fspath(pretrained)
    if path.exists():
        raise NotADirectoryError(f"{name!r} is a file; pass the directory written by save_pretrained.")
    if not _HUB_ID.fullmatch(name) or name.startswith((".", "/", "~")):
        raise FileNotFoundError(
            f"no processor directory at {name!r} (resolved to {str(path.resolve())!r}); pass a "
            "directory written by AkiProcessor.save_pretrained, or a hub id like 'owner/name'."
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                name,
                allow_patterns=["*.json", "*.jinja", "*.model", "*.txt", "tokenizer*"],
            )
        )
    except Exception as err:
        raise FileNotFoundError(
            f"{name!r} is not a local directory and could not be fetched from the hub "
            f"({type(err).__name__}: {err}); without network, pass a local directory written by "
            "AkiProcessor.save_pretrained (or pre-download the repo into the HF cache)."
        ) from err


__all__ = ["IGNORE_INDEX", "AkiProcessor"]
