"""aki in VLMEvalKit (registry package ``ms-vlmeval``): the model class and a launcher.

``python -m aki.eval.toolkits.vlmevalkit ARGS`` runs VLMEvalKit's own ``run.py`` with ARGS after
making ``AkiVLMEval`` a VLMEvalKit model class, so a ``--config`` file can name it::

    {"model": {"aki": {"class": "AkiVLMEval", "model_path": "/path/to/saved/model"}},
     "data": {"MME": {"class": "ImageYORNDataset", "dataset": "MME"}}}

Prompts are VLMEvalKit's (the dataset's ``build_prompt``), exactly what ``aki eval`` builds; the
text pieces of a message are joined without separator and only the first image is read, as in the
AKI wrapper that VLMEvalKit ships. ``max_new_tokens`` defaults to ``aki eval``'s for the benchmark
(by VLMEvalKit dataset name), else 512.
"""

from __future__ import annotations

import sys

from aki.eval.benchmarks import BENCHMARKS
from aki.eval.toolkits.common import answer, load

try:
    from vlmeval.vlm.base import BaseModel
except ImportError as err:  # pragma: no cover - exercised without the extra
    raise ImportError("the VLMEvalKit adapter needs `pip install 'aki[vlmevalkit]'` (package ms-vlmeval)") from err

_BY_TSV = {b.tsv: b for b in BENCHMARKS.values()}


def max_new_tokens_for(dataset: str | None) -> int:
    """aki's default for the benchmark a VLMEvalKit dataset name starts with, else 512."""
    for tsv, bench in sorted(_BY_TSV.items(), key=lambda kv: -len(kv[0])):
        if dataset and dataset.startswith(tsv.split("_")[0]):
            return bench.max_new_tokens
    return 512


class AkiVLMEval(BaseModel):
    """A saved aki model (``model_path``) as a VLMEvalKit model."""

    INSTALL_REQ = False
    INTERLEAVE = False

    def __init__(self, model_path: str, device: str = "cpu", dtype: str | None = None,
                 max_new_tokens: int | None = None, **kwargs) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(f"AkiVLMEval got unknown options {sorted(kwargs)}")
        self.model, self.processor = load(model_path, device, dtype)
        self.max_new_tokens = max_new_tokens

    def generate_inner(self, message: list[dict], dataset: str | None = None) -> str:
        text = "".join(m["value"] for m in message if m["type"] == "text")
        images = [m["value"] for m in message if m["type"] == "image"]
        return answer(self.model, self.processor, text, images, self.max_new_tokens or max_new_tokens_for(dataset))


def register() -> None:
    """Make ``AkiVLMEval`` a class VLMEvalKit's ``--config`` can name."""
    import vlmeval.vlm

    vlmeval.vlm.AkiVLMEval = AkiVLMEval


def main(argv: list[str] | None = None) -> None:
    """VLMEvalKit's ``run.py`` main with aki registered."""
    register()
    from vlmeval import run

    sys.argv = [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]
    run.load_env()
    run.main()


if __name__ == "__main__":
    main()
