"""The leakage guard: before the first step, check real batches' layouts under the run's rule.

A rule that unlocks prompt tokens (MMA and friends) is only safe when every trained token is
labelled ANSWER. Data or options that break that (captions labelled as prompt text, loss on the
question) would let the model read what it must predict; the guard refuses such a run up front
with an error naming the rule, the position and the config keys to change.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from aki.masks import LeakageError, check_no_leaks, predicts_from_labels


def check_batches(batches: Iterable[dict[str, torch.Tensor]], rule: str, mask_options: dict | None = None,
                  context: str = "") -> int:
    """Run :func:`aki.masks.check_no_leaks` on each batch; returns how many were checked.

    Raises :class:`LeakageError` (with ``context`` prepended) on the first leaking batch.
    """
    n = 0
    for batch in batches:
        try:
            check_no_leaks(batch["segments"], predicts_from_labels(batch["labels"]), rule,
                           document_ids=batch.get("document_ids"), **(mask_options or {}))
        except LeakageError as err:
            raise LeakageError(f"{context}{err}") from err
        n += 1
    return n
