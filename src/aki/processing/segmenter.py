"""Segment labels from a chat template's structure (never from hard-coded token ids).

The structure of a template is learned by rendering probe conversations with it:

- the **generation prompt** ``G`` = render(``[user]``, generation prompt) minus render(``[user]``)
  (``<|assistant|>\\n`` for phi3, ``<|start_header_id|>assistant<|end_header_id|>\\n\\n`` for
  llama3, ``<|im_start|>assistant\\n`` for qwen2, the same plus an empty think block for qwen3);
- the **assistant-turn marker** ``M``: ``G`` up to the end of its first non-blank line, trailing
  spaces excluded (``<|assistant|>``, ``<|start_header_id|>assistant<|end_header_id|>``,
  ``<|im_start|>assistant``). What ``G`` writes after ``M`` (line breaks, qwen3's
  ``<think>\\n\\n</think>\\n\\n``) is the template's lead-in to the answer;
- the **end of turn** ``E`` = what render(``[user, assistant(X)]``) writes after ``G`` + ``X``,
  with trailing whitespace removed (``<|endoftext|>``, ``<|eot_id|>``, ``<|im_end|>``).

A rendered text is cut into alternating *prompt blocks* and *answers*: a prompt block runs from
the end of the previous answer (or the start) up to and including the next ``M``; the answer
runs from there (the lead-in first) up to and including the next ``E``, or to the end of the
text. Character labels (:class:`aki.masks.Segment`):

- ANSWER: every character of an answer: the lead-in after ``M``, the assistant's content and its
  end-of-turn token(s). The lead-in is ANSWER even in a generation prompt, so image rows never
  see it, and training labels it, as the release does (its first labelled token is the newline
  after ``<|assistant|>``). Whitespace the template writes after ``E`` (qwen's ``\\n``) starts
  the next prompt block.
- IMAGE: each ``<image>`` marker (later expanded to ``num_image_tokens`` IMAGE tokens).
- QUERY: in a prompt block holding an image, everything after the block's first image that is
  not an image, up to and including ``M``: the user's text after the image, the end of the user
  turn, and the assistant-turn marker. This is the span the release unlocks for image rows.
- TEXT: everything else: BOS, system prompt, role headers, the user's text before the block's
  first image (T&I order), and a whole prompt block without an image (including its ``M``).

A token takes the label of its first character (the offset mapping of a fast tokenizer). So a
tokenizer that absorbs the newline into the marker's token (Phi-3's role tokens are
``rstrip``) gives that token QUERY and the answer's first token ANSWER, and a token that merges
the lead-in with the answer's text is ANSWER: the split never depends on how a tokenizer cuts
the lead-in. Every ``<image>`` token is IMAGE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from aki.constants import IMAGE_TOKEN
from aki.masks import Segment
from aki.processing.chat_templates import render_chat

_PROBE_QUESTION = "\x01aki-question\x01"
_PROBE_ANSWER = "\x01aki-answer\x01"
_TEXT, _IMAGE, _QUERY, _ANSWER = (int(s) for s in (Segment.TEXT, Segment.IMAGE, Segment.QUERY, Segment.ANSWER))


class TemplateStructureError(ValueError):
    """The chat template lacks a property the segment labelling needs."""


def assistant_marker(generation_prompt: str) -> str:
    """The assistant-turn marker of a generation prompt: up to the end of its first non-blank
    line, trailing spaces excluded (the rest is the template's lead-in to the answer)."""
    start = len(generation_prompt) - len(generation_prompt.lstrip())
    newline = generation_prompt.find("\n", start)
    line_end = len(generation_prompt) if newline < 0 else newline
    return generation_prompt[:line_end].rstrip()


@dataclass(frozen=True)
class TemplateStructure:
    """The strings that delimit prompts and answers in text rendered by one chat template."""

    generation_marker: str
    """``G``: everything the generation prompt appends (the marker plus the answer lead-in)."""
    end_of_turn: str
    """``E``: what ends an assistant turn."""
    assistant_marker: str = ""
    """``M``: the assistant-turn marker, a prefix of ``G``; the QUERY span ends with it."""
    image_marker: str = IMAGE_TOKEN

    def __post_init__(self) -> None:
        if not self.assistant_marker:
            object.__setattr__(self, "assistant_marker", assistant_marker(self.generation_marker))
        if not self.generation_marker.startswith(self.assistant_marker) or not self.assistant_marker:
            raise TemplateStructureError(
                f"the assistant marker {self.assistant_marker!r} must be a non-empty prefix of the "
                f"generation prompt {self.generation_marker!r}."
            )

    @property
    def answer_lead_in(self) -> str:
        """What the template writes between the marker and the answer (ANSWER side)."""
        return self.generation_marker[len(self.assistant_marker):]

    @classmethod
    def probe(
        cls, chat_template: str, special_tokens: Mapping[str, str | None] | None = None
    ) -> TemplateStructure:
        """Learn ``G``, ``M`` and ``E`` by rendering two probe conversations with the template."""
        user = [{"role": "user", "content": _PROBE_QUESTION}]
        plain = render_chat(user, chat_template, special_tokens=special_tokens)
        prompt = render_chat(user, chat_template, add_generation_prompt=True, special_tokens=special_tokens)
        if not prompt.startswith(plain) or not prompt[len(plain):].strip():
            raise TemplateStructureError(
                "the chat template's generation prompt must append the assistant header to the "
                "rendered conversation (render(msgs, add_generation_prompt=True) must start with "
                "render(msgs) and add a visible marker); fix the template or use one from "
                "aki.processing.CHAT_TEMPLATES."
            )
        marker = prompt[len(plain):]
        full = render_chat(
            [*user, {"role": "assistant", "content": _PROBE_ANSWER}],
            chat_template,
            special_tokens=special_tokens,
        )
        if not full.startswith(prompt + _PROBE_ANSWER):
            raise TemplateStructureError(
                "the chat template must render an assistant message as the generation prompt "
                "followed by its content (so training and generation see the same header); fix "
                "the template or use one from aki.processing.CHAT_TEMPLATES."
            )
        end = full[len(prompt) + len(_PROBE_ANSWER):].rstrip()
        if not end:
            raise TemplateStructureError(
                "the chat template writes nothing after an assistant message; it needs an "
                "end-of-turn token (e.g. <|im_end|>) so answers can be delimited."
            )
        return cls(generation_marker=marker, end_of_turn=end)

    def char_segments(self, text: str) -> tuple[np.ndarray, bool]:
        """One :class:`Segment` value per character of ``text`` (rules in the module docstring),
        and whether the text holds an answer (anything after a full generation prompt)."""
        n = len(text)
        segs = np.full(n, _TEXT, dtype=np.int8)
        img, gen, end = self.image_marker, self.generation_marker, self.end_of_turn
        marker_len = len(self.assistant_marker)
        has_answer = False
        pos = 0
        while pos < n:
            g = text.find(gen, pos)
            prompt_end = n if g < 0 else g + marker_len
            k = text.find(img, pos, prompt_end)
            if k >= 0:
                segs[k:prompt_end] = _QUERY
                while k >= 0:
                    segs[k : k + len(img)] = _IMAGE
                    k = text.find(img, k + len(img), prompt_end)
            if g < 0:
                break
            e = text.find(end, g + len(gen))
            answer_end = n if e < 0 else e + len(end)
            if text.find(img, prompt_end, answer_end) >= 0:
                raise ValueError(
                    f"an {img} marker sits inside an assistant answer; images may only be in "
                    "user turns (put the image item in the user message)."
                )
            segs[prompt_end:answer_end] = _ANSWER
            has_answer = has_answer or answer_end > g + len(gen)
            pos = answer_end
        return segs, has_answer


def tokenize_with_segments(
    tokenizer, texts: Sequence[str], char_segments: Sequence[np.ndarray], image_token_id: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Tokenize ``texts`` in one batch (no special tokens added); label each token by its first
    character. Returns ``(ids, segments)`` int64 arrays per text."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(
            "AkiProcessor needs a fast tokenizer (offset mappings locate segments); load it with "
            "AutoTokenizer.from_pretrained(..., use_fast=True)."
        )
    if not texts:
        return []
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for text, chars, ids, offsets in zip(texts, char_segments, enc["input_ids"], enc["offset_mapping"], strict=True):
        ids = np.asarray(ids, dtype=np.int64)
        n = len(text)
        if not len(ids):
            out.append((ids, np.zeros(0, dtype=np.int64)))
            continue
        spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        where = np.where(spans[:, 0] < n, spans[:, 0], np.maximum(spans[:, 1] - 1, 0))
        segs = chars[np.minimum(where, max(n - 1, 0))].astype(np.int64) if n else np.full(len(ids), _TEXT)
        wrong = (ids == image_token_id) != (segs == _IMAGE)
        if wrong.any():
            start, stop = spans[int(np.argmax(wrong))]
            raise ValueError(
                f"the tokenizer does not keep {IMAGE_TOKEN} as one token at characters "
                f"{start}..{stop} of the prompt; add it as a special token "
                "(aki.processing.add_aki_tokens) before building the processor."
            )
        out.append((ids, segs))
    return out


__all__ = ["TemplateStructure", "TemplateStructureError", "assistant_marker", "tokenize_with_segments"]
