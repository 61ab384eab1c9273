"""How well a model answers the held-out questions when the scene is told in words."""

from __future__ import annotations

import json
from collections import Counter
from itertools import islice
from pathlib import Path


def text_accuracy(model_dir: str | Path, heldout: str | Path, n_items: int, max_length: int) -> dict[str, float]:
    """Teacher-forced accuracy (%) per ``task/format``: an item counts when every answer token is the
    model's top prediction. Scored on the first ``n_items`` rows of ``heldout`` (from
    :func:`aki.language.scene_text.write_text_data`); ``model_dir`` is an AKI model folder."""
    import torch

    from aki.constants import IGNORE_INDEX
    from aki.data.batching import encode_sample
    from aki.data.readers import llava_conversations
    from aki.data.records import Sample
    from aki.model import AkiForConditionalGeneration
    from aki.processing import AkiProcessor

    model = AkiForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = AkiProcessor.from_pretrained(model_dir)
    right: Counter = Counter()
    total: Counter = Counter()
    with open(heldout, encoding="utf-8") as f:
        rows = [json.loads(line) for line in islice(f, n_items)]
    with torch.no_grad():
        for rec in rows:
            sample = Sample(images=[], messages=llava_conversations(rec, "split")[0])
            enc = encode_sample(processor, sample, max_length=max_length)
            logits = model(input_ids=enc.input_ids[None]).logits[0]
            targets = enc.labels[1:]
            at = (targets != IGNORE_INDEX).nonzero().flatten()
            key = f"{rec['task']}/{rec['format']}"
            right[key] += bool((logits[at].argmax(-1) == targets[at]).all())
            total[key] += 1
    return {k: round(100 * right[k] / total[k], 1) for k in sorted(total)}
