"""Segment labels from a chat template's structure (never from hard-coded token ids).

The structure of a template is learned by rendering probe conversations with it:

- the **generation marker** ``G`` = render(``[user]``, generation prompt) minus render(``[user]``)
  (``<|assistant|>\\n`` for phi3, ``<|start_header_id|>assistant<|end_header_id|>\\n\\n`` for
  llama3, ``<|im_start|>assistant\\n`` for qwen2, the same plus the empty think block for qwen3);
- the **end of turn** ``E`` = what render(``[user, assistant(X)]``) writes after ``G`` + ``X``,
  with trailing whitespace removed (``<|endoftext|>``, ``<|eot_id|>``, ``<|im_end|>``).

A rendered text is then cut into alternating *prompt blocks* and *answers*: a prompt block runs
from the end of the previous answer (or the start) up to and including the next ``G``; the
answer runs from there up to and including the next ``E`` (or the end of the text). Character
labels (:class:`aki.masks.Segment`):

- ANSWER: every character of an answer: the assistant's content and its end-of-turn token(s).
  Whitespace the template writes after ``E`` (qwen's ``\\n``) starts the next prompt block.
- IMAGE: each ``<image>`` marker (later expanded to ``num_image_tokens`` IMAGE tokens).
- QUERY: in a prompt block holding an image, everything after the block's first image that is
  not an image, up to and including ``G``: the user's text after the image, the end of the user
  turn, and the assistant generation marker.
- TEXT: everything else: BOS, system prompt, role headers, the user's text before the block's
  first image (T&I order), and a whole prompt block without an image (including its ``G``).

A token takes the label of its first character (the offset mapping of a fast tokenizer). Two
consequences: a token that straddles ``G`` and the answer (only possible with tokenizers that
merge across that boundary) counts as QUERY; every ``<image>`` token is IMAGE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aki.masks import Segment
from aki.processing.chat_templates import render_chat
from aki.processing.families import IMAGE_TOKEN

_PROBE_QUESTION = "\x01aki-question\x01"
_PROBE_ANSWER = "\x01aki-answer\x01"


class TemplateStructureError(ValueError):
    """The chat template lacks a property the segment labelling needs."""


@dataclass(frozen=True)
class TemplateStructure:
    """The strings that delimit prompts and answers in text rendered by one chat template."""

    generation_marker: str
    end_of_turn: str
    image_marker: str = IMAGE_TOKEN

    @classmethod
    def probe(
        cls, chat_template: str, special_tokens: Mapping[str, str | None] | None = None
    ) -> TemplateStructure:
        """Learn ``G`` and ``E`` by rendering two probe conversations with the template."""
        user = [{"role": "user", "content": _PROBE_QUESTION}]
        plain = render_chat(user, chat_template, special_tokens=special_tokens)
        prompt = render_chat(user, chat_template, add_generation_prompt=True, special_tokens=special_tokens)
        if not prompt.startswith(plain) or len(prompt) == len(plain):
            raise TemplateStructureError(
                "the chat template's generation prompt must append the assistant header to the "
                "rendered conversation (render(msgs, add_generation_prompt=True) must start with "
                "render(msgs) and be longer); fix the template or use one from "
                "aki.processing.CHAT_TEMPLATES."
            )
        marker = prompt[len(plain) :]
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
        end = full[len(prompt) + len(_PROBE_ANSWER) :].rstrip()
        if not end:
            raise TemplateStructureError(
                "the chat template writes nothing after an assistant message; it needs an "
                "end-of-turn token (e.g. <|im_end|>) so answers can be delimited."
            )
        return cls(generation_marker=marker, end_of_turn=end)

    def char_segments(self, text: str) -> list[int]:
        """One :class:`Segment` value per character of ``text`` (rules in the module docstring)."""
        n = len(text)
        segs = [int(Segment.TEXT)] * n
        img, gen, end = self.image_marker, self.generation_marker, self.end_of_turn
        pos = 0
        while pos < n:
            g = text.find(gen, pos)
            prompt_end = n if g < 0 else g + len(gen)
            k = text.find(img, pos, prompt_end)
            if k >= 0:
                segs[k:prompt_end] = [int(Segment.QUERY)] * (prompt_end - k)
                while k >= 0:
                    segs[k : k + len(img)] = [int(Segment.IMAGE)] * len(img)
                    k = text.find(img, k + len(img), prompt_end)
            if g < 0:
                break
            e = text.find(end, prompt_end)
            answer_end = n if e < 0 else e + len(end)
            if text.find(img, prompt_end, answer_end) >= 0:
                raise ValueError(
                    f"an {img} marker sits inside an assistant answer; images may only be in "
                    "user turns (put the image item in the user message)."
                )
            segs[prompt_end:answer_end] = [int(Segment.ANSWER)] * (answer_end - prompt_end)
            pos = answer_end
        return segs


def tokenize_with_segments(
    tokenizer, text: str, char_segments: list[int], image_token_id: int
) -> tuple[list[int], list[int]]:
    """Tokenize ``text`` (no special tokens added) and label each token by its first character."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(
            "AkiProcessor needs a fast tokenizer (offset mappings locate segments); load it with "
            "AutoTokenizer.from_pretrained(..., use_fast=True)."
        )
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    n = len(text)
    segs: list[int] = []
    for tok, (start, stop) in zip(ids, enc["offset_mapping"], strict=True):
        where = start if start < n else max(stop - 1, 0)
        seg = char_segments[where] if n else int(Segment.TEXT)
        if (tok == image_token_id) != (seg == Segment.IMAGE):
            raise ValueError(
                f"the tokenizer does not keep {IMAGE_TOKEN} as one token at characters "
                f"{start}..{stop} of the prompt; add it as a special token "
                "(aki.processing.add_aki_tokens) before building the processor."
            )
        segs.append(seg)
    return ids, segs


__all__ = ["TemplateStructure", "TemplateStructureError", "tokenize_with_segments"]
