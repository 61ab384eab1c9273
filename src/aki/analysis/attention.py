"""Where image tokens look, and whether they depend on the question.

- :func:`attention_by_segment`: per layer, the attention mass that IMAGE query rows put on each
  segment kind of key (TEXT, IMAGE, QUERY). Under ``causal`` the QUERY share is 0 by construction;
  under ``mma`` it says how much the trained model actually uses the unlocked path.
- :func:`question_sensitivity`: how much the image tokens' last hidden states move when only the
  question changes (0 under ``causal``; the paper's "question-aware image representations").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from aki.masks import Segment
from aki.prompts import user_message

KEY_KINDS = {"text": Segment.TEXT, "image": Segment.IMAGE, "query": Segment.QUERY}


def _prompts(processor, questions: Sequence[str]) -> list[str]:
    return [processor.apply_chat_template([user_message(q)], add_generation_prompt=True) for q in questions]


@torch.no_grad()
def attention_by_segment(model, processor, images: Sequence, questions: Sequence[str]) -> dict[str, list[float]]:
    """``{"text"|"image"|"query": [mass per layer]}``: mean share of an image token's attention
    (over heads, image tokens and samples) that lands on keys of each kind."""
    batch = processor(text=_prompts(processor, questions), images=[[im] for im in images], return_tensors="pt")
    impl = model.attn_implementation
    model.language_model.set_attn_implementation("eager")  # only eager returns attention weights
    try:
        out = model(**batch, output_attentions=True)  # the prompt is read under the model's rule
    finally:
        model.language_model.set_attn_implementation(impl)
    seg = batch["segments"]
    rows = (seg == Segment.IMAGE).float()  # [B, L]
    result: dict[str, list[float]] = {k: [] for k in KEY_KINDS}
    for att in out.attentions:  # [B, H, L, L]
        per_row = att.float().mean(1)  # [B, L, L], mean over heads
        for name, kind in KEY_KINDS.items():
            cols = (seg == kind).float()  # [B, L]
            mass = (per_row * cols[:, None, :]).sum(-1)  # [B, L]: share of each row on that kind
            result[name].append(float((mass * rows).sum() / rows.sum().clamp(min=1)))
    return result


@torch.no_grad()
def question_sensitivity(model, processor, image, questions: Sequence[str]) -> float:
    """Mean L2 distance between the image tokens' last hidden states under different questions,
    relative to their mean norm (0 = the image representation ignores the question)."""
    if len(questions) < 2:
        raise ValueError("question_sensitivity needs at least two questions to compare.")
    states = []
    for q in questions:
        batch = processor(text=_prompts(processor, [q]), images=[[image]], return_tensors="pt")
        h = model(**batch, output_hidden_states=True).hidden_states[-1][0]
        states.append(h[batch["segments"][0] == Segment.IMAGE])
    ref = torch.stack(states)  # [Q, n_image, d]
    diffs = [(ref[i] - ref[j]).norm(dim=-1).mean() for i in range(len(states)) for j in range(i + 1, len(states))]
    return float(torch.stack(diffs).mean() / ref.norm(dim=-1).mean().clamp(min=1e-12))
