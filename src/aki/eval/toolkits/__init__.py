"""aki as a model inside the evaluation toolkits people use (optional extras).

- :mod:`.vlmevalkit`: ``pip install 'aki[vlmevalkit]'``; run ``python -m aki.eval.toolkits.vlmevalkit``
  with VLMEvalKit's own arguments (it registers the model class ``AkiVLMEval``, then hands over to
  VLMEvalKit's ``run.py``).
- :mod:`.lmms_eval`: ``pip install 'aki[lmms-eval]'``; aki's package declares the ``lmms_eval.models``
  entry point, so ``lmms-eval --model aki --model_args pretrained=DIR ...`` just works.

Both answer through :func:`aki.eval.generation.generate_batch` (greedy, the model's attention rule,
the processor's chat template), so their predictions equal ``aki eval``'s for the same prompt.
"""
