"""Generation under an attention rule: prefill the prompt with the rule's mask, then decode causally.

transformers' ``generate()`` refuses 4D masks, so the prompt is run once through the model with
the rule's mask into a ``DynamicCache`` (the image tokens' keys/values then carry what MMA let them
see), and new tokens are decoded one at a time. Generated tokens are ANSWER tokens: causal, and
their position ids continue each row's prompt positions (computed by ``aki.masks`` over the prompt
segments followed by ANSWER labels, so CCA's ring positions are continued correctly too). This is
exactly the mask a no-cache recompute builds when it labels generated tokens ANSWER.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from transformers import DynamicCache

from aki.masks import Segment


def _eos_set(eos_token_id: int | Sequence[int] | None) -> list[int]:
    if eos_token_id is None:
        return []
    if isinstance(eos_token_id, int):
        return [eos_token_id]
    return [int(e) for e in eos_token_id]


def select_next(
    logits: torch.Tensor,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``[B, V]`` logits -> ``[B]`` next tokens: argmax, or a temperature / top-k / top-p sample."""
    if not do_sample:
        return logits.argmax(-1)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 when sampling; got {temperature}.")
    logits = logits.float() / temperature
    if top_k and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass before it already reaches top_p (the top token always stays)
        drop = (probs.cumsum(-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@contextmanager
def _decode_attention(model):
    """Decode with SDPA when the model runs flex attention.

    One query row against the cache needs no custom mask (answer tokens are causal), and
    compiled flex attention with a single query fails to build on CPU in torch 2.13. The KV
    cache is the same for every implementation, so switching is exact.
    """
    config = model.language_model.config
    before = config._attn_implementation
    if before != "flex_attention":
        yield
        return
    config._attn_implementation = "sdpa"
    try:
        yield
    finally:
        config._attn_implementation = before


def decode_steps(
    model,
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor | None = None,
    *,
    pixel_values: torch.Tensor | None = None,
    segments: torch.Tensor | None = None,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    stop_strings: str | Sequence[str] | None = None,
    tokenizer=None,
    generator: torch.Generator | None = None,
    suppress_image_token: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(next_tokens [B], finished [B])`` once per decoding step.

    Rows that finished (EOS or a stop string) get ``pad_token_id`` from the next step on; the
    loop ends when every row has finished or after ``max_new_tokens`` steps.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [B, L]; got {tuple(input_ids.shape)}.")
    B, L = input_ids.shape
    device = input_ids.device
    if attention_mask is None:
        attention_mask = (torch.ones_like(input_ids) if segments is None
                          else (torch.as_tensor(segments) != Segment.PAD).long())
    attention_mask = attention_mask.to(device).long()
    eos = _eos_set(eos_token_id)
    if pad_token_id is None:
        pad_token_id = getattr(model.config.text_config, "pad_token_id", None)
        if pad_token_id is None:
            pad_token_id = eos[0] if eos else 0
    if isinstance(stop_strings, str):
        stop_strings = [stop_strings]
    if stop_strings and tokenizer is None:
        raise ValueError("stop_strings need the tokenizer (pass tokenizer=processor.tokenizer) to decode text.")
    if max_new_tokens <= 0:
        return

    segs = model.resolve_segments(input_ids, attention_mask, segments)
    # Positions of the prompt followed by max_new_tokens ANSWER tokens: what a recompute would use.
    answers = torch.full((B, max_new_tokens), int(Segment.ANSWER), dtype=segs.dtype, device=device)
    positions = model.build_position_ids(torch.cat([segs, answers], dim=1))

    cache = DynamicCache(config=model.language_model.config)
    left_padded = bool(attention_mask[:, -1].all())
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        pixel_values=pixel_values,
        segments=segs,
        position_ids=positions[:, :L],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1 if left_padded else 0,
    )
    if left_padded:
        logits = out.logits[:, -1]
    else:  # right padding: read each row at its last real token
        last = (attention_mask * torch.arange(L, device=device)).argmax(-1)
        logits = out.logits[torch.arange(B, device=device), last]
    cache = out.past_key_values

    finished = torch.zeros(B, dtype=torch.bool, device=device)
    texts = [[] for _ in range(B)]
    mask = attention_mask
    for step in range(max_new_tokens):
        logits = logits.float()
        if suppress_image_token and model.config.image_token_id < logits.shape[-1]:
            logits[:, model.config.image_token_id] = float("-inf")
        nxt = select_next(logits, do_sample, temperature, top_p, top_k, generator)
        nxt = torch.where(finished, torch.full_like(nxt, pad_token_id), nxt)
        newly = torch.zeros_like(finished)
        if eos:
            newly |= torch.isin(nxt, torch.tensor(eos, device=device))
        if stop_strings:
            for b in range(B):
                if finished[b]:
                    continue
                texts[b].append(int(nxt[b]))
                text = tokenizer.decode(texts[b], skip_special_tokens=False)
                if any(s in text for s in stop_strings):
                    newly[b] = True
        finished = finished | newly
        yield nxt, finished
        if bool(finished.all()) or step == max_new_tokens - 1:
            return
        mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=device)], dim=1)
        with _decode_attention(model):
            out = model.language_model(
                input_ids=nxt.unsqueeze(-1),
                attention_mask=mask,
                position_ids=positions[:, L + step : L + step + 1],
                past_key_values=cache,
                use_cache=True,
            )
        logits, cache = out.logits[:, -1], out.past_key_values


def generate(
    model,
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor | None = None,
    *,
    streamer=None,
    **kwargs,
) -> torch.LongTensor:
    """``[B, L_prompt + new]``: the prompt then the new tokens (pad after a row's EOS).

    Accepts the keyword arguments of :func:`decode_steps` plus ``streamer`` (a transformers
    ``TextStreamer``-like object with ``put`` / ``end``; batch size 1). ``max_length`` is not
    taken: pass ``max_new_tokens``.
    """
    if streamer is not None and input_ids.shape[0] != 1:
        raise ValueError("a streamer takes one sequence: generate with batch size 1 to stream.")
    if streamer is not None:
        streamer.put(input_ids.cpu())
    new = []
    try:
        for nxt, _ in decode_steps(model, input_ids, attention_mask, **kwargs):
            new.append(nxt)
            if streamer is not None:
                streamer.put(nxt.cpu())
    finally:
        if streamer is not None:
            streamer.end()
    if not new:
        return input_ids
    return torch.cat([input_ids, torch.stack(new, dim=1).to(input_ids.dtype)], dim=1)


def stream_generate(model, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
                    **kwargs) -> Iterator[int]:
    """Yield each new token id as it is decoded (batch size 1); stops after EOS / a stop string."""
    if input_ids.shape[0] != 1:
        raise ValueError("stream_generate takes one sequence (batch size 1); use generate() for batches.")
    for nxt, _ in decode_steps(model, input_ids, attention_mask, **kwargs):
        yield int(nxt[0])


__all__ = ["decode_steps", "generate", "select_next", "stream_generate"]
