"""One ``generate`` call for many requests: per-row sampling, stopping and streaming.

transformers' ``generate`` takes one generation config for the whole batch; the requests of a
batch each bring their own. Two hooks that ``generate`` calls every step make rows independent
without leaving transformers' decoding loop (its cache, the rule's prefill, greedy argmax):

- :class:`RowSampler` (a ``LogitsProcessor``, applied last): a sampled row is warped with
  transformers' own warpers at *its* temperature / top-k / top-p (and repetition penalty),
  sampled with *its* seeded generator, and handed back as a one-hot row, so ``generate``'s greedy
  argmax picks exactly that token. Greedy rows are left untouched: their tokens are what the
  same prompt alone would get (the model's batched == one-by-one greedy guarantee). A seed thus
  reproduces a sampled answer whatever else shares the batch.
- :class:`BatchRouter` (a ``StoppingCriteria``): reads each row's new token, decides that row's
  end (end-of-turn token, its own stop strings, its own ``max_tokens``, a cancelled request),
  and sends its new text to its request. It is a stopping criterion rather than a streamer
  because transformers calls criteria every step *before* the streamer (which on CUDA runs a
  step late), and a row's stop must be known in the step that produced it.

:func:`stack_prompts` left-pads prompts that were encoded one by one (on arrival, so bad input
is refused before it joins a batch) into one batch, as the processor pads a batch it encodes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    StoppingCriteria,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from aki.masks import Segment


@dataclass(frozen=True)
class SamplingParams:
    """How one request's answer is decoded. ``temperature == 0`` is greedy."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def changes_logits(self) -> bool:
        return not self.greedy or self.repetition_penalty != 1.0


@dataclass
class Row:
    """One request inside a running batch: its tokens, text, and how it ended."""

    params: SamplingParams
    emit: Callable[[str], None]
    """Called with each new piece of answer text (from the generating thread)."""
    is_cancelled: Callable[[], bool] = lambda: False
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0
    finish_reason: str | None = None
    completion_tokens: int = 0

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


class RowSampler(LogitsProcessor):
    """Per-row sampling with transformers' warpers and a generator per row (see the module doc)."""

    def __init__(self, params: Sequence[SamplingParams], device: torch.device | str) -> None:
        self.rows: list[tuple[LogitsProcessorList, torch.Generator | None] | None] = []
        for p in params:
            if not p.changes_logits:
                self.rows.append(None)
                continue
            chain = LogitsProcessorList()
            if p.repetition_penalty != 1.0:
                chain.append(RepetitionPenaltyLogitsProcessor(p.repetition_penalty))
            generator = None
            if not p.greedy:
                chain.append(TemperatureLogitsWarper(p.temperature))
                if p.top_k > 0:
                    chain.append(TopKLogitsWarper(p.top_k))
                if p.top_p < 1.0:
                    chain.append(TopPLogitsWarper(p.top_p))
                seed = p.seed if p.seed is not None else random.SystemRandom().getrandbits(63)
                generator = torch.Generator(device=device).manual_seed(seed)
            self.rows.append((chain, generator))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for i, row in enumerate(self.rows):
            if row is None:
                continue
            chain, generator = row
            warped = chain(input_ids[i : i + 1], scores[i : i + 1].clone())
            if generator is None:
                scores[i] = warped[0]
                continue
            probs = warped[0].float().softmax(-1)
            token = torch.multinomial(probs, 1, generator=generator)
            scores[i] = float("-inf")
            scores[i, token] = 0.0
        return scores


class BatchRouter(StoppingCriteria):
    """Routes each row's new tokens to its request and decides each row's end (module doc)."""

    def __init__(self, rows: Sequence[Row], decode: Callable[[list[int]], str], eos_token_ids: Sequence[int],
                 prompt_length: int) -> None:
        self.rows = list(rows)
        self.decode = decode
        self.eos = {int(t) for t in eos_token_ids}
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None = None, **kwargs) -> torch.BoolTensor:
        if input_ids.shape[1] > self.prompt_length:
            new = input_ids[:, -1].tolist()
            for row, token in zip(self.rows, new, strict=True):
                if not row.finished:
                    self._step(row, int(token))
        return torch.tensor([row.finished for row in self.rows], dtype=torch.bool, device=input_ids.device)

    def _step(self, row: Row, token: int) -> None:
        if row.is_cancelled():
            row.finish_reason = "cancelled"
            return
        row.completion_tokens += 1
        if token in self.eos:
            self._finish(row, "stop", len(row.text))
            return
        row.token_ids.append(token)
        row.text = self.decode(row.token_ids)
        for stop in row.params.stop:
            at = row.text.find(stop, max(0, row.sent - len(stop)))
            if at >= 0:
                self._finish(row, "stop", at)
                return
        if len(row.token_ids) >= row.params.max_new_tokens:
            self._finish(row, "length", len(row.text))
            return
        safe = len(row.text) - _held_back(row.text, row.params.stop)
        if safe > row.sent:
            row.emit(row.text[row.sent : safe])
            row.sent = safe

    def _finish(self, row: Row, reason: str, end: int) -> None:
        row.text = row.text[:end]
        if end > row.sent:
            row.emit(row.text[row.sent : end])
            row.sent = end
        row.finish_reason = reason

    def finish_all(self) -> None:
        """Rows still open when ``generate`` returned (its own length limit): ended by length."""
        for row in self.rows:
            if not row.finished:
                self._finish(row, "length", len(row.text))


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Characters at the end of ``text`` not to send yet: an incomplete character (a byte-level
    token that ends mid-character decodes to U+FFFD) or the start of a possible stop string."""
    hold = 0
    while hold < len(text) and text[len(text) - 1 - hold] == "\ufffd":
        hold += 1
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return hold


def stack_prompts(encodings: Sequence[dict[str, torch.Tensor]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Left-pad single-prompt encodings (``input_ids``, ``attention_mask``, ``segments``
    ``[1, L]``, optional ``pixel_values``) into one batch, images in row order."""
    length = max(int(e["input_ids"].shape[1]) for e in encodings)
    n = len(encodings)
    batch = {
        "input_ids": torch.full((n, length), int(pad_token_id), dtype=torch.long),
        "attention_mask": torch.zeros((n, length), dtype=torch.long),
        "segments": torch.full((n, length), int(Segment.PAD), dtype=torch.long),
    }
    for b, e in enumerate(encodings):
        width = int(e["input_ids"].shape[1])
        for key in batch:
            batch[key][b, length - width :] = e[key][0]
    pixels = [e["pixel_values"] for e in encodings if e.get("pixel_values") is not None]
    if pixels:
        batch["pixel_values"] = torch.cat(pixels)
    return batch


__all__ = ["BatchRouter", "Row", "RowSampler", "SamplingParams", "stack_prompts"]
