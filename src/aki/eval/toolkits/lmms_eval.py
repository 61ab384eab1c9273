"""aki in lmms-eval (0.7.x): a "simple" model class, registered through the ``lmms_eval.models``
entry point that aki's package declares (no fork, no environment variable)::

    lmms-eval --model aki --model_args pretrained=/path/to/saved/model --tasks mme

Greedy answers through :func:`aki.eval.generation.generate_batch`; the task's ``max_new_tokens``
is used, ``until`` strings cut the answer afterwards. Likelihood tasks are scored through
:func:`aki.eval.generation.continuation_logprob`. Multi-round tasks are refused with a clear error
(their chat state is lmms-eval's own and not wired to aki's prompts). lmms-eval's own prompts and
scorers apply.
"""

from __future__ import annotations


def manifest():
    """The entry point's payload (called by lmms-eval only)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="aki", simple_class_path="aki.eval.toolkits.lmms_eval.AkiLmms")


try:
    from lmms_eval.api.model import lmms
except ImportError:  # the class exists only with the extra installed
    lmms = None

if lmms is not None:

    class AkiLmms(lmms):
        """A saved aki model as an lmms-eval model."""

        is_simple = True

        def __init__(self, pretrained: str, device: str = "cpu", dtype: str | None = None,
                     batch_size: int = 1, **kwargs) -> None:
            super().__init__()
            if kwargs:
                raise TypeError(f"aki: unknown model_args {sorted(kwargs)}")
            from aki.eval.toolkits.common import load

            self.model, self.processor = load(pretrained, device, dtype)
            self.batch_size_per_gpu = int(batch_size)
            self._said_greedy = False  # warn once per run when a task asks for sampling

        def generate_until(self, requests) -> list[str]:
            import warnings

            from tqdm.auto import tqdm

            from aki.eval.toolkits.common import answer

            out = []
            for request in tqdm(requests, desc="aki", disable=len(requests) < 2):
                context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
                visuals = doc_to_visual(self.task_dict[task][split][doc_id]) or []
                gen_kwargs = dict(gen_kwargs or {})
                if (gen_kwargs.get("do_sample") or float(gen_kwargs.get("temperature") or 0) > 0) and not self._said_greedy:
                    warnings.warn(f"aki answers greedily; task {task!r} asks for sampling ({gen_kwargs}), "
                                  "which is not applied", stacklevel=2)
                    self._said_greedy = True
                text = answer(self.model, self.processor, context, list(visuals),
                              int(gen_kwargs.get("max_new_tokens", 128)))
                until = gen_kwargs.get("until") or []
                for stop in [until] if isinstance(until, str) else until:
                    if stop:
                        text = text.split(stop)[0]
                out.append(text)
            return out

        def loglikelihood(self, requests) -> list[tuple[float, bool]]:
            """``(log p(target | context), is greedy)`` per request, for likelihood-scored tasks."""
            from tqdm.auto import tqdm

            from aki.eval.generation import continuation_logprob
            from aki.processing import load_image

            out = []
            for request in tqdm(requests, desc="aki", disable=len(requests) < 2):
                context, doc_to_target, doc_to_visual, doc_id, task, split = request.args
                doc = self.task_dict[task][split][doc_id]
                target = doc_to_target(doc) if callable(doc_to_target) else doc_to_target
                visuals = doc_to_visual(doc) or []
                image = load_image(visuals[0]) if visuals else None  # the paper's models read one image
                out.append(continuation_logprob(self.model, self.processor, context, image, str(target)))
            return out

        def generate_until_multi_round(self, requests):
            raise NotImplementedError("aki's lmms-eval model answers single-turn tasks only")
