"""Evaluation: the paper's twelve Table 1 numbers from the benchmarks' own files, official scoring.

- Readers (:mod:`aki.eval.readers`, :mod:`aki.eval.layouts`): VLMEvalKit TSVs, the benchmarks' own
  and Hugging Face files, images by base64, bytes or under ``--image-root``; nothing downloads.
- One module per benchmark (prompt + official scorer): :mod:`~aki.eval.mme`,
  :mod:`~aki.eval.mmbench`, :mod:`~aki.eval.seedbench`, :mod:`~aki.eval.llavabench`,
  :mod:`~aki.eval.mmmu`, :mod:`~aki.eval.mathvista`, :mod:`~aki.eval.pope`, :mod:`~aki.eval.mmvet`,
  :mod:`~aki.eval.realworldqa`, :mod:`~aki.eval.cvbench`; :mod:`~aki.eval.openqa` for the synthetic
  attribute questions. Registry and file lookup: :mod:`aki.eval.benchmarks`.
- Running: :mod:`aki.eval.suite` (``aki eval``, resumable), :mod:`aki.eval.runner` (the synthetic
  split), :mod:`aki.eval.generation` (batched greedy answers), :mod:`aki.eval.judge` (GPT judge),
  :mod:`aki.eval.report` (Table 1, chart, terminal summary).
- Toolkits: :mod:`aki.eval.toolkits` (aki as a model in VLMEvalKit and lmms-eval).

All scores are percentages (0-100) except MME's sums.
"""

from __future__ import annotations

__all__ = ["benchmarks", "cvbench", "openqa", "pope", "runner", "suite"]
