"""``AkiProcessor``: prompts, images and conversations to model inputs with segment labels.

A transformers ``ProcessorMixin`` over SigLIP's image processor (PIL backend: the release's
resize) and a fast tokenizer, so ``save_pretrained`` / ``from_pretrained`` / ``AutoProcessor``
and the ``image-text-to-text`` pipeline work as for any transformers VLM. What transformers'
generic ``__call__`` cannot do, and so is written here: label every token with its
:class:`aki.masks.Segment` from the chat template's structure (see
:mod:`aki.processing.segmenter`), and resize images before dropping alpha, as the release does.

Output of every encoding method (``BatchFeature``, tensors ``[B, L]`` unless noted):

- ``input_ids``: each ``<image>`` marker expanded to ``num_image_tokens`` copies of
  ``image_token_id``, so positions line up with the LLM's embedding sequence;
- ``attention_mask``: 1 for real tokens, 0 for padding;
- ``segments``: :class:`aki.masks.Segment` per token: PAD for padding; IMAGE for every expanded
  image token; QUERY from just after a prompt block's first image up to and including the
  assistant-turn marker (``<|assistant|>``, the llama3 header, ``<|im_start|>assistant``);
  ANSWER for what the template writes after that marker (its newline, qwen3's empty think
  block), each assistant answer and its end-of-turn token, and caption..EOS in pre-training;
  TEXT for everything else (BOS, system, role headers, text before the first image, prompt
  blocks without an image). A prompt block starts after an answer.
- ``labels`` (when a sample holds an answer): the token id on ANSWER tokens, -100 elsewhere;
- ``pixel_values`` ``[N, 3, H, W]``: every image of the batch, sample by sample, in marker
  order; omitted when the batch has no image.

``max_length`` counts tokens *before* image expansion, each ``<image>`` marker as one token (the
official convention: PT 128, SFT 512); a returned row is longer by ``num_image_tokens - 1`` per
image. Prompts are never cut: ``__call__`` raises :class:`PromptTooLongError` for a prompt over
the limit (``truncation=True`` is refused); ``encode_conversations`` cuts only inside the last
answer(s) that fit (dropping later turns whole) and raises when not even the first prompt plus
one answer token fits; ``encode_captions`` cuts the caption at its end (I&T) or shortens it
before the image (T&I).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin

from aki.constants import END_OF_CHUNK_TOKEN, IGNORE_INDEX, IMAGE_TOKEN
from aki.masks import Segment
from aki.pretrained import resolve_pretrained
from aki.processing.chat_templates import (
    CAPTION_FORMATS,
    CHAT_TEMPLATES,
    caption_text,
    render_chat,
    validate_messages,
)
from aki.processing.errors import ImageCountError, PromptTooLongError
from aki.processing.families import FAMILIES, detect_family, normalize_family
from aki.processing.images import load_image, tower_rgb
from aki.processing.segmenter import TemplateStructure, tokenize_with_segments

Messages = Sequence[Mapping[str, Any]]

DEFAULT_IMAGE_SIZE = 384
"""The paper's tower (SigLIP so400m-patch14-384) reads 384x384 images."""

_PAD, _IMAGE, _ANSWER = int(Segment.PAD), int(Segment.IMAGE), int(Segment.ANSWER)
_INIT_OPTIONS = ("num_image_tokens", "family", "chat_template")
_CALL_OPTIONS = ("padding_side", "max_length", "return_tensors", "padding", "truncation", "add_special_tokens")
_IMAGE_KEYS = ("image", "url", "path", "base64")


def siglip_image_processor(size: int | Sequence[int] | Mapping[str, int] = DEFAULT_IMAGE_SIZE):
    """SigLIP's image processor, PIL backend: squash-resize to ``size`` (antialiased bicubic),
    rescale 1/255, normalise with mean 0.5 / std 0.5: the official AKI transform."""
    from transformers import SiglipImageProcessorPil

    if isinstance(size, Mapping):
        height, width = int(size["height"]), int(size["width"])
    elif isinstance(size, int):
        height = width = int(size)
    else:
        height, width = (int(s) for s in size)
    return SiglipImageProcessorPil(size={"height": height, "width": width})


def AkiImageProcessor(
    size: int | Sequence[int] | Mapping[str, int] = DEFAULT_IMAGE_SIZE,
    resample: str | int = "bicubic",
    image_mean: Sequence[float] = (0.5, 0.5, 0.5),
    image_std: Sequence[float] = (0.5, 0.5, 0.5),
    rescale_factor: float = 1 / 255,
):
    """The name aki's own image processor had: now SigLIP's PIL image processor with the same
    settings (the two agreed to 1e-7). Prefer :func:`siglip_image_processor`."""
    if not isinstance(size, Mapping):
        height, width = (size, size) if isinstance(size, int) else size
        size = {"height": int(height), "width": int(width)}
    return _siglip_from_dict({"image_processor_type": "AkiImageProcessor", "size": dict(size), "resample": resample,
                              "image_mean": list(image_mean), "image_std": list(image_std),
                              "rescale_factor": rescale_factor})


class AkiProcessor(ProcessorMixin):
    """Tokenizer + image processor + chat template, producing inputs with segment labels.

    ``family`` (``phi3``, ``llama3``, ``qwen2``, ``qwen3``) picks the chat template and the
    stop tokens; when omitted it is detected from the tokenizer's vocabulary. ``chat_template``
    overrides the family's template (it must append the assistant header as its generation
    prompt and end assistant turns with an end-of-turn token; checked at construction).
    ``image_processor`` defaults to SigLIP's at 384 pixels.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        num_image_tokens: int = 144,
        chat_template: str | None = None,
        family: str | None = None,
    ) -> None:
        if tokenizer is None:
            raise ValueError("AkiProcessor needs a tokenizer (e.g. aki.processing.build_tiny_tokenizer('phi3')).")
        if int(num_image_tokens) < 1:
            raise ValueError(f"num_image_tokens must be >= 1; got {num_image_tokens}.")
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError(
                "AkiProcessor needs a fast tokenizer (its offset mapping locates the segments); "
                "load it with AutoTokenizer.from_pretrained(..., use_fast=True)."
            )
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
        family = normalize_family(family) if family is not None else detect_family(tokenizer)
        if isinstance(chat_template, Mapping):  # several named templates (ProcessorMixin's format)
            chat_template = chat_template.get("default")
        if chat_template is None:
            chat_template = CHAT_TEMPLATES.get(family) if family else tokenizer.chat_template
        if not chat_template:
            raise ValueError(
                "no chat template: pass family= (one of "
                f"{sorted(FAMILIES)}) or chat_template=, or use a tokenizer that has one."
            )
        if image_processor is None:
            image_processor = siglip_image_processor()
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self.num_image_tokens = int(num_image_tokens)
        self.family = family
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
            f"image_processor={type(self.image_processor).__name__}(size={dict(self.image_processor.size)}), "
            f"tokenizer={type(self.tokenizer).__name__}(vocab={len(self.tokenizer)}))"
        )

    # ----------------------------------------------------------------- templates
    def apply_chat_template(
        self,
        conversation: Messages | Sequence[Messages],
        chat_template: str | None = None,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        tokenize: bool = False,
        return_dict: bool = True,
        return_tensors: str | None = "pt",
        processor_kwargs: Mapping[str, Any] | None = None,
        images=None,
        **kwargs: Any,
    ):
        """Render messages (or a list of conversations) to prompt string(s).

        One ``<image>`` marker per ``{"type": "image"}`` item (OpenAI-style ``image_url`` items
        too). ``continue_final_message`` ends the text inside a final assistant message (a
        prefilled answer). With ``tokenize=True`` the prompt(s) are encoded with
        :meth:`__call__` (``processor_kwargs`` and the encoding keywords of ``__call__`` go
        there) and the batch is returned (only its ``input_ids`` with ``return_dict=False``);
        images come from ``images=`` or from the items' ``image`` / ``url`` / ``path`` fields.
        """
        call_kwargs = dict(processor_kwargs or {})
        for key in list(kwargs):
            if key in _CALL_OPTIONS:
                call_kwargs[key] = kwargs.pop(key)
        for key in ("tools", "documents"):
            if kwargs.get(key) is not None:
                raise ValueError(f"AkiProcessor's chat templates take no {key}; drop {key}=.")
            kwargs.pop(key, None)
        if kwargs.pop("return_assistant_tokens_mask", False):
            raise ValueError(
                "return_assistant_tokens_mask is not needed with AkiProcessor: with tokenize=True the "
                "batch carries labels (answer tokens) and segments."
            )
        if kwargs:
            raise TypeError(
                f"apply_chat_template() got unexpected keyword arguments {sorted(kwargs)}; it takes "
                "chat_template, add_generation_prompt, continue_final_message, tokenize, return_dict, "
                f"return_tensors, processor_kwargs, images and {list(_CALL_OPTIONS)}."
            )
        if add_generation_prompt and continue_final_message:
            raise ValueError("add_generation_prompt and continue_final_message exclude each other; pass one.")
        template = self.chat_template if chat_template is None else chat_template
        if template != self.chat_template:
            raise ValueError(
                "AkiProcessor renders with its own chat template (its segments are learned from it); "
                "build a processor with chat_template=... instead of passing one here."
            )
        batched = bool(conversation) and not isinstance(conversation[0], Mapping)
        conversations = [_normalize(conv) for conv in (conversation if batched else [conversation])]
        texts = []
        for conv in conversations:
            validate_messages(conv)
            texts.append(
                render_chat(
                    conv,
                    self.chat_template,
                    add_generation_prompt=add_generation_prompt,
                    continue_final_message=continue_final_message,
                    special_tokens=self._special_tokens(),
                )
            )
        if not tokenize:
            return texts if batched else texts[0]
        if images is None:
            images = call_kwargs.pop("images", None)
        if images is None:
            images = [_images_in(conv) for conv in conversations]
        elif not batched:
            images = [images] if not isinstance(images, (list, tuple)) else [list(images)]
        call_kwargs.setdefault("return_tensors", return_tensors)
        out = self(text=texts, images=images if any(len(g) for g in images) else None, **call_kwargs)
        return out if return_dict else out["input_ids"]

    # ----------------------------------------------------------------- encoding
    def _encode_texts(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray, bool]]:
        """Token ids, token segments and has-answer per text (one tokenizer call for all)."""
        labelled = [self.structure.char_segments(t) for t in texts]
        tokens = tokenize_with_segments(self.tokenizer, texts, [c for c, _ in labelled], self.image_token_id)
        return [(ids, segs, has) for (ids, segs), (_, has) in zip(tokens, labelled, strict=True)]

    def __call__(
        self,
        images=None,
        text: str | Sequence[str] | None = None,
        videos=None,
        audio=None,
        *,
        padding_side: str = "left",
        max_length: int | None = None,
        return_tensors: str | None = "pt",
        padding: bool | str = True,
        truncation: bool | str | None = None,
        add_special_tokens: bool | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Encode prompt string(s) with ``<image>`` markers and their images (generation).

        ``images``: None, one image, or one entry per text (an image or a list of images);
        anything :func:`aki.processing.load_image` reads. Left padding by default; ``padding``
        is True/"longest" (pad to the longest row) or False (rows of equal length only, or
        ``return_tensors=None``). ``labels`` are added when a text holds an assistant answer. A
        prompt longer than ``max_length`` raises :class:`PromptTooLongError`; prompts are never
        truncated. Unknown keyword arguments raise.
        """
        if kwargs:
            raise TypeError(
                f"AkiProcessor() got unexpected keyword arguments {sorted(kwargs)}; it takes images, "
                f"text and {list(_CALL_OPTIONS)}."
            )
        if videos is not None or audio is not None:
            raise ValueError("AkiProcessor reads images and text only; videos= and audio= must be None.")
        if _is_text(images) and ((text is not None and not _is_text(text)) or (text is None and self._is_prompt(images))):
            images, text = text, images  # the older (text, images) positional order
        if text is None:
            raise ValueError("pass text= (a prompt string with one <image> marker per image, or a list).")
        _check_options(padding=padding, truncation=truncation, add_special_tokens=add_special_tokens)
        texts = [text] if isinstance(text, str) else list(text)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} must be a string; got {type(t).__name__}.")
        encoded = self._encode_texts(texts)
        for i, (ids, _, _) in enumerate(encoded):
            if max_length is not None and len(ids) > max_length:
                raise PromptTooLongError(
                    f"sample {i}: the prompt has {len(ids)} tokens (each <image> counted once) but "
                    f"max_length={max_length}; shorten the text or raise max_length (prompts are "
                    "never cut, so no image or question is lost).",
                    sample_index=i,
                    length=len(ids),
                    max_length=max_length,
                )
        if images is not None and len(texts) == 1 and not isinstance(images, (list, tuple)):
            images = [images]
        return self._collate(
            [(ids, segs) for ids, segs, _ in encoded], images, padding_side=padding_side,
            return_tensors=return_tensors, labels=any(has for _, _, has in encoded), padding=padding,
        )

    def _is_prompt(self, value: str | Sequence[str]) -> bool:
        """Whether strings are prompts (they hold an image marker or the assistant marker), not paths."""
        texts = [value] if isinstance(value, str) else value
        return any(IMAGE_TOKEN in t or self.structure.assistant_marker in t for t in texts)

    def encode_conversations(
        self,
        conversations: Messages | Sequence[Messages],
        images=None,
        add_generation_prompt: bool = False,
        padding_side: str = "right",
        max_length: int | None = None,
        return_tensors: str | None = "pt",
    ) -> BatchFeature:
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
        for i, (ids, segs, _) in enumerate(self._encode_texts(texts)):
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
    ) -> BatchFeature:
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
        texts, char_labels = [], []
        for i, cap in enumerate(caps):
            if IMAGE_TOKEN in cap:
                raise ValueError(f"caption {i} contains the {IMAGE_TOKEN} marker; remove it from the caption text.")
            text = caption_text(cap, order, bos, self.tokenizer.eos_token)
            chars = np.full(len(text), _ANSWER, dtype=np.int8)
            head = len(bos or "")
            chars[:head] = int(Segment.TEXT)
            k = text.index(IMAGE_TOKEN, head)
            chars[k : k + len(IMAGE_TOKEN)] = _IMAGE
            texts.append(text)
            char_labels.append(chars)
        encoded = []
        for i, (ids, segs) in enumerate(tokenize_with_segments(self.tokenizer, texts, char_labels, self.image_token_id)):
            if max_length is not None and len(ids) > max_length:
                ids, segs = _cut_caption(ids, segs, max_length, i)
            encoded.append((ids, segs))
        if images is not None and len(images) == len(caps):
            images = [im if isinstance(im, (list, tuple)) else [im] for im in images]
        return self._collate(
            encoded, images, padding_side=padding_side, return_tensors=return_tensors, labels=True
        )

    # ----------------------------------------------------------------- images
    def preprocess_images(self, images: Sequence[Any], return_tensors: str | None = "pt"):
        """Images to ``pixel_values`` the release's way: load, resize to the tower's size (the
        image processor's resample, in the image's own mode), drop alpha (``convert("RGB")``),
        then the image processor's rescale and normalise. RGB images come out exactly as the
        image processor alone would make them."""
        size = getattr(self.image_processor, "size", None) or {}
        height, width = size.get("height"), size.get("width")
        target = (int(width), int(height)) if height and width else None
        resample = getattr(self.image_processor, "resample", 3)
        prepared = [tower_rgb(load_image(im), target, resample) for im in images]
        ip = self.image_processor
        if (return_tensors == "pt" and target is not None and type(ip).__name__ == "SiglipImageProcessorPil"
                and not getattr(ip, "do_center_crop", False) and not getattr(ip, "do_pad", False)):
            return _rescale_and_normalise(prepared, self.image_processor)
        # Already RGB: transformers' own conversion would composite a colour key or alpha on white.
        options = {"do_convert_rgb": False} if hasattr(self.image_processor, "do_convert_rgb") else {}
        return self.image_processor(prepared, return_tensors=return_tensors, **options)["pixel_values"]

    # ----------------------------------------------------------------- batching
    def _collate(
        self,
        encoded: list[tuple[np.ndarray, np.ndarray]],
        images,
        *,
        padding_side: str,
        return_tensors: str | None,
        labels: bool,
        padding: bool | str = True,
    ) -> BatchFeature:
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right'; got {padding_side!r}.")
        counts = [int((segs == _IMAGE).sum()) for _, segs in encoded]
        groups = _group_images(images, counts)
        rows = [self._expand(ids, segs) for ids, segs in encoded]
        lengths = [len(ids) for ids, _ in rows]
        pad_rows = padding not in (False, "do_not_pad")
        if not pad_rows and len(set(lengths)) > 1 and return_tensors is not None:
            raise ValueError(
                f"padding=False leaves rows of different lengths {lengths}, which cannot form "
                "tensors; pass padding=True (the default) or return_tensors=None."
            )
        length = max(lengths, default=0)
        columns = {"input_ids": self.pad_token_id, "attention_mask": 0, "segments": _PAD}
        if labels:
            columns["labels"] = IGNORE_INDEX
        data: dict[str, Any] = {key: np.full((len(rows), length), fill, dtype=np.int64) for key, fill in columns.items()}
        for b, (ids, segs) in enumerate(rows):
            where = slice(length - len(ids), length) if padding_side == "left" else slice(0, len(ids))
            data["input_ids"][b, where] = ids
            data["attention_mask"][b, where] = 1
            data["segments"][b, where] = segs
            if labels:
                data["labels"][b, where] = np.where(segs == _ANSWER, ids, IGNORE_INDEX)
        flat = [img for group in groups for img in group]
        if return_tensors == "pt":
            out: dict[str, Any] = {key: torch.from_numpy(value) for key, value in data.items()}
        elif return_tensors == "np":
            out = data
        elif return_tensors is None:
            out = {key: value.tolist() for key, value in data.items()}
            if not pad_rows:  # rows as long as their tokens
                out = {key: [row[length - n:] if padding_side == "left" else row[:n]
                             for row, n in zip(value, lengths, strict=True)] for key, value in out.items()}
        else:
            raise ValueError(f"return_tensors must be 'pt', 'np' or None; got {return_tensors!r}.")
        if flat:
            out["pixel_values"] = self.preprocess_images(flat, return_tensors=return_tensors)
        return BatchFeature(out)

    def _expand(self, ids: np.ndarray, segs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each ``<image>`` token to ``num_image_tokens`` IMAGE tokens."""
        is_image = segs == _IMAGE
        if not is_image.any():
            return ids, segs
        reps = np.where(is_image, self.num_image_tokens, 1)
        return np.repeat(np.where(is_image, self.image_token_id, ids), reps), np.repeat(segs, reps)

    # ----------------------------------------------------------------- decoding
    def _collapse_images(self, ids) -> list[int]:
        """Each run of ``num_image_tokens`` image ids back to one ``<image>`` marker."""
        arr = np.asarray(ids.tolist() if torch.is_tensor(ids) else ids, dtype=np.int64).reshape(-1)
        is_image = arr == self.image_token_id
        if not is_image.any():
            return arr.tolist()
        pos = np.arange(len(arr))
        run_start = np.maximum.accumulate(np.where(~is_image, pos + 1, 0))
        keep = ~is_image | ((pos - run_start) % self.num_image_tokens == 0)
        return arr[keep].tolist()

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

    def post_process_image_text_to_text(self, generated_outputs, skip_special_tokens: bool = True, **kwargs: Any):
        """Decode generated sequences (what transformers' image-text-to-text pipeline calls)."""
        if torch.is_tensor(generated_outputs) and generated_outputs.dim() == 1:
            generated_outputs = generated_outputs.unsqueeze(0)
        return self.batch_decode(generated_outputs, skip_special_tokens=skip_special_tokens, **kwargs)

    # ----------------------------------------------------------------- persistence
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> AkiProcessor:
        """Load from a folder written by :meth:`save_pretrained` (or a hub id, from the HF cache
        when offline). Keyword arguments ``num_image_tokens``, ``family`` and ``chat_template``
        override the saved values. A folder saved by aki before it used ``ProcessorMixin`` loads
        too; a model folder without processor files gets the tower size and image-token count
        from its ``config.json``.
        """
        overrides = {key: kwargs.pop(key) for key in _INIT_OPTIONS if key in kwargs}
        source = resolve_pretrained(pretrained_model_name_or_path, "processor", kwargs,
                                    fix="pass a folder written by AkiProcessor.save_pretrained")
        folder = Path(source)
        if folder.is_dir() and not (folder / "processor_config.json").is_file():
            return cls._from_parts(folder, {}, overrides, kwargs)
        if folder.is_dir():
            saved = _read_json(folder / "processor_config.json")
            if "image_processor" not in saved:  # written by aki's processor before ProcessorMixin
                return cls._from_parts(folder, saved, overrides, kwargs)
        processor = super().from_pretrained(source, **kwargs)
        if overrides:
            current = {"num_image_tokens": processor.num_image_tokens, "family": processor.family,
                       "chat_template": processor.chat_template}
            processor = cls(image_processor=processor.image_processor, tokenizer=processor.tokenizer,
                            **{**current, **overrides})
        return processor

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        """The tokenizer through ``AutoTokenizer``; SigLIP's image processor on its PIL backend
        (the release's resize), whatever backends are installed."""
        from transformers import AutoImageProcessor, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        config = (processor_dict or {}).get("image_processor")
        if isinstance(config, Mapping) and config.get("image_processor_type") == "SiglipImageProcessor":
            image_processor = _siglip_from_dict(config)
        else:
            image_processor = AutoImageProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return [image_processor, tokenizer]

    @classmethod
    def _from_parts(cls, folder: Path, saved: dict[str, Any], overrides: dict[str, Any], kwargs: dict[str, Any]):
        """A folder without a ProcessorMixin ``processor_config.json``: aki's older processor
        format (``preprocessor_config.json`` of ``AkiImageProcessor``) or a bare model folder."""
        from transformers import AutoTokenizer

        import aki.model.configuration  # noqa: F401  (registers the "aki" type for AutoTokenizer)

        hub = {k: v for k, v in kwargs.items() if k in ("cache_dir", "revision", "token", "local_files_only")}
        settings = {key: saved[key] for key in _INIT_OPTIONS if key in saved}
        pre = folder / "preprocessor_config.json"
        config_file = folder / "config.json"
        try:
            if pre.is_file():
                image_processor = _siglip_from_dict(_read_json(pre))
            elif config_file.is_file() and _read_json(config_file).get("model_type") == "aki":
                model_config = _read_json(config_file)
                image_processor = siglip_image_processor(int(model_config["vision_config"]["image_size"]))
                latents = (model_config.get("resampler_config") or {}).get("num_latents")
                if latents:
                    settings.setdefault("num_image_tokens", int(latents))
            else:
                raise FileNotFoundError(
                    f"{str(folder)!r} has no processor_config.json (and no aki config.json to take the "
                    "image size from); pass the folder written by AkiProcessor.save_pretrained."
                )
            tokenizer = AutoTokenizer.from_pretrained(str(folder), **hub)
        except (FileNotFoundError, OSError, ValueError, KeyError, TypeError) as err:
            raise (FileNotFoundError if isinstance(err, FileNotFoundError) else ValueError)(
                f"could not load the processor in {str(folder)!r} ({err}); if it was saved by an older "
                "aki, re-save it with that version: AkiProcessor.from_pretrained(old).save_pretrained(new)."
            ) from err
        settings.update(overrides)
        return cls(image_processor=image_processor, tokenizer=tokenizer, **settings)


# --------------------------------------------------------------------- auto classes
def register_auto_processor() -> None:
    """``AutoProcessor.from_pretrained`` on an aki folder returns an :class:`AkiProcessor`."""
    from transformers import AutoProcessor

    from aki.model.configuration import AkiConfig

    AutoProcessor.register(AkiConfig, AkiProcessor, exist_ok=True)


# --------------------------------------------------------------------- helpers
def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(path)!r} is not valid JSON ({err}).") from err


_RESAMPLE_NAMES = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


def _siglip_from_dict(config: Mapping[str, Any]):
    """SigLIP's PIL image processor from a saved dict (also the old ``AkiImageProcessor`` one,
    whose ``resample`` is a name)."""
    from transformers import SiglipImageProcessorPil

    kind = config.get("image_processor_type")
    if kind not in ("SiglipImageProcessor", "SiglipImageProcessorPil", "AkiImageProcessor"):
        raise ValueError(f"expected a SigLIP image processor config; got image_processor_type={kind!r}.")
    values = {k: v for k, v in config.items() if k not in ("image_processor_type", "processor_class")}
    if isinstance(values.get("resample"), str):
        name = values["resample"].lower()
        if name not in _RESAMPLE_NAMES:
            raise ValueError(f"unknown resample {values['resample']!r}; use one of {sorted(_RESAMPLE_NAMES)}.")
        values["resample"] = _RESAMPLE_NAMES[name]
    if isinstance(values.get("size"), int):
        values["size"] = {"height": values["size"], "width": values["size"]}
    return SiglipImageProcessorPil(**values)


def _rescale_and_normalise(images: Sequence[Any], image_processor) -> torch.Tensor:
    """SigLIP's PIL-backend rescale and normalise for images already at its size, batched in torch.

    Why not the image processor itself: its numpy normalisation runs on transposed (strided)
    arrays and costs about 3 ms per 384-pixel image, more than the resize; this is the same
    arithmetic (uint8 -> float64 * rescale_factor -> float32, then ``(x - mean) / std`` in
    float32), so the result is bit-identical (tested against the image processor).
    """
    x = torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in images]))  # [N, H, W, 3]
    if image_processor.do_rescale:
        x = (x.double() * float(image_processor.rescale_factor)).float()
    else:
        x = x.float()
    if image_processor.do_normalize:
        mean = torch.tensor(image_processor.image_mean, dtype=torch.float32)
        std = torch.tensor(image_processor.image_std, dtype=torch.float32)
        x = (x - mean) / std
    return x.permute(0, 3, 1, 2).contiguous()


def _check_options(*, padding, truncation, add_special_tokens) -> None:
    if padding not in (True, False, "longest", "do_not_pad"):
        raise ValueError(
            f"padding={padding!r} is not supported: AkiProcessor pads every row to the longest "
            "(padding=True) or not at all (padding=False); a fixed length would depend on how many "
            "images each row expands."
        )
    if truncation not in (None, False, "do_not_truncate"):
        raise ValueError(
            f"truncation={truncation!r} is not supported: prompts are never cut (a cut could drop "
            "an image or the question); pass max_length= to get a PromptTooLongError instead, or "
            "shorten the text. Training conversations are cut inside answers by encode_conversations."
        )
    if add_special_tokens:
        raise ValueError(
            "add_special_tokens=True is not supported: the chat template writes BOS and every "
            "control token itself; render the prompt with apply_chat_template."
        )


def _is_text(value) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, str) for v in value)


def _normalize(conversation: Messages) -> list[dict[str, Any]]:
    """Messages with OpenAI-style ``image_url`` items as ``{"type": "image", "url": ...}`` and
    keys whose value is None dropped (as transformers' processors do)."""
    if isinstance(conversation, (str, bytes)) or not isinstance(conversation, Sequence):
        return conversation  # validate_messages names the problem
    out = []
    for message in conversation:
        if not isinstance(message, Mapping):
            out.append(message)
            continue
        message = {k: v for k, v in message.items() if v is not None}
        content = message.get("content")
        if isinstance(content, Sequence) and not isinstance(content, str):
            items = []
            for item in content:
                if isinstance(item, Mapping) and item.get("type") == "image_url":
                    url = item.get("image_url")
                    item = {"type": "image", "url": url.get("url") if isinstance(url, Mapping) else url}
                items.append(item)
            message["content"] = items
        out.append(message)
    return out


def _images_in(conversation: Messages) -> list:
    """The images of a conversation's image items (``image``, ``url``, ``path`` or ``base64``
    field), in order; items without one are skipped."""
    found = []
    for message in conversation:
        content = message.get("content")
        if isinstance(content, str) or content is None:
            continue
        for item in content:
            if item.get("type") != "image":
                continue
            for key in _IMAGE_KEYS:
                if item.get(key) is not None:
                    value = item[key]
                    if key == "base64":
                        import base64

                        value = base64.b64decode(value.split(",", 1)[-1])
                    found.append(value)
                    break
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


def _cut_in_answer(ids: np.ndarray, segs: np.ndarray, max_length: int, index: int):
    """Keep at most ``max_length`` tokens, ending inside an answer (later turns dropped whole)."""
    answer = np.flatnonzero(segs[:max_length] == _ANSWER)
    if not len(answer):
        first = np.flatnonzero(segs == _ANSWER)
        prompt_len = int(first[0]) if len(first) else len(segs)
        raise PromptTooLongError(
            f"sample {index}: the prompt before the first answer has {prompt_len} tokens (each "
            f"<image> counted once), leaving no room for an answer within max_length={max_length}; "
            "skip this sample or raise max_length (prompts and images are never cut).",
            sample_index=index,
            length=len(ids),
            max_length=max_length,
        )
    cut = int(answer[-1]) + 1
    return ids[:cut], segs[:cut]


def _cut_caption(ids: np.ndarray, segs: np.ndarray, max_length: int, index: int):
    """Shorten a caption sample to ``max_length`` tokens without touching the image or BOS."""
    img = int(np.flatnonzero(segs == _IMAGE)[0])
    excess = len(ids) - max_length
    start = img
    while start > 0 and segs[start - 1] == _ANSWER:
        start -= 1
    if start == img:  # I&T: the caption follows the image; cut at the end, keep a caption token
        if max_length >= img + 2:
            return ids[:max_length], segs[:max_length]
    elif img - start > excess:  # T&I: drop caption tokens just before the image, keep one
        keep = np.r_[0 : img - excess, img : len(ids)]
        return ids[keep], segs[keep]
    raise PromptTooLongError(
        f"caption {index}: max_length={max_length} cannot hold the image marker, the "
        "end-of-chunk token and one caption token; raise max_length.",
        sample_index=index,
        length=len(ids),
        max_length=max_length,
    )


__all__ = ["IGNORE_INDEX", "AkiImageProcessor", "AkiProcessor", "register_auto_processor", "siglip_image_processor"]
