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

        def _answer(self, context: str, visuals: list, gen_kwargs: dict | None, task: str) -> str:
            """One greedy answer to ``context`` about ``visuals``, cut at the task's stop strings."""
            import warnings

            from aki.eval.toolkits.common import answer

            gen_kwargs = dict(gen_kwargs or {})
            if (gen_kwargs.get("do_sample") or float(gen_kwargs.get("temperature") or 0) > 0) and not self._said_greedy:
                warnings.warn(f"aki answers greedily; task {task!r} asks for sampling ({gen_kwargs}), "
                              "which is not applied", stacklevel=3)
                self._said_greedy = True
            text = answer(self.model, self.processor, context, list(visuals or []),
                          int(gen_kwargs.get("max_new_tokens", 128)))
            until = gen_kwargs.get("until") or []
            for stop in [until] if isinstance(until, str) else until:
                if stop:
                    text = text.split(stop)[0]
            return text

        def generate_until(self, requests) -> list[str]:
            from tqdm.auto import tqdm

            out = []
            for request in tqdm(requests, desc="aki", disable=len(requests) < 2):
                context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
                visuals = doc_to_visual(self.task_dict[task][split][doc_id]) or []
                out.append(self._answer(context, visuals, gen_kwargs, task))
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

        def generate_until_multi_round(self, requests) -> list[list[str]]:
            """lmms-eval's multi-round protocol (as its Qwen2-VL and LLaVA-OneVision models follow it):
            round 0 answers the request's context; after each round the task's ``doc_to_text(doc,
            previous_output=, round_idx=, previous_round_info=)`` returns ``(visuals, context,
            terminal, round results, info)`` for the next one, until ``terminal``. Each round is one
            single-turn prompt (the task puts the history into its context), as aki is trained."""
            from tqdm.auto import tqdm

            out = []
            for request in tqdm(requests, desc="aki", disable=len(requests) < 2):
                context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = request.args
                doc = self.task_dict[task][split][doc_id]
                visuals, rounds, info = doc_to_visual(doc) or [], [], None
                while True:
                    rounds.append(self._answer(context, visuals, gen_kwargs, task))
                    visuals, context, terminal, results, info = doc_to_text(
                        doc, previous_output=list(rounds), round_idx=len(rounds), previous_round_info=info)
                    rounds = list(results)
                    if terminal:
                        break
                out.append(rounds)
            return out
