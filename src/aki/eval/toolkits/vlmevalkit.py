"""aki in VLMEvalKit (registry package ``ms-vlmeval``): the model class and a launcher.

VLMEvalKit has no plugin entry point: its ``--config`` file names a model ``class`` that must be an
attribute of ``vlmeval.vlm`` (or ``vlmeval.api``). ``python -m aki.eval.toolkits.vlmevalkit ARGS``
adds ``AkiVLMEval`` there at run time (no file of VLMEvalKit is edited), then runs VLMEvalKit's own
``run.py`` with ARGS, so a config can name it::

    {"model": {"aki": {"class": "AkiVLMEval", "model_path": "/path/to/saved/model"}},
     "data": {"MME": {"class": "ImageYORNDataset", "dataset": "MME"}}}

Prompts are VLMEvalKit's (the dataset's ``build_prompt``), which is what ``aki eval`` builds; the
text pieces of a message are joined without separator and only the first image is read (a warning
says so when there are more), as in the AKI wrapper that VLMEvalKit ships. ``max_new_tokens``
defaults to ``aki eval``'s for the benchmark when the VLMEvalKit dataset is one of aki's (its name is
the TSV name, or starts with it and ``_``), else 512 (VLMEvalKit's AKI wrapper's default).

VLMEvalKit's ``run.py`` logs a failed model x dataset and carries on with exit status 0; the
launcher reads VLMEvalKit's ``status.json`` afterwards and exits 1, naming each failure.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path

from aki.eval.benchmarks import BENCHMARKS
from aki.eval.toolkits.common import answer, load

try:
    from vlmeval.vlm.base import BaseModel
except ImportError as err:  # pragma: no cover - exercised without the extra
    raise ImportError("the VLMEvalKit adapter needs `pip install 'aki[vlmevalkit]'` (package ms-vlmeval)") from err

DEFAULT_MAX_NEW_TOKENS = 512
log = logging.getLogger(__name__)


def max_new_tokens_for(dataset: str | None) -> int:
    """``aki eval``'s default for the benchmark whose VLMEvalKit TSV name ``dataset`` is (or starts
    with, followed by ``_``: a variant or a custom copy); else 512."""
    for bench in BENCHMARKS.values():
        if dataset and (dataset == bench.tsv or dataset.startswith(bench.tsv + "_")):
            return bench.max_new_tokens
    return DEFAULT_MAX_NEW_TOKENS


def split_message(message: list[dict]) -> tuple[str, list[str]]:
    """A VLMEvalKit message (``[{"type": "image" | "text", "value": ...}, ...]``) as the prompt aki
    reads (the text pieces joined without separator) and the image paths."""
    text = "".join(m["value"] for m in message if m["type"] == "text")
    return text, [m["value"] for m in message if m["type"] == "image"]


class AkiVLMEval(BaseModel):
    """A saved aki model (``model_path``) as a VLMEvalKit model."""

    INSTALL_REQ = False
    INTERLEAVE = False

    def __init__(self, model_path: str, device: str = "cpu", dtype: str | None = None,
                 max_new_tokens: int | None = None, **kwargs) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(f"AkiVLMEval got unknown options {sorted(kwargs)}; it takes model_path, device, "
                            "dtype and max_new_tokens")
        self.model, self.processor = load(model_path, device, dtype)
        self.max_new_tokens = max_new_tokens
        self._told: set[str] = set()

    def generate_inner(self, message: list[dict], dataset: str | None = None) -> str:
        text, images = split_message(message)
        if len(images) > 1:
            warnings.warn(f"AkiVLMEval: a {dataset} prompt has {len(images)} images; only the first is read "
                          "(AKI reads one image per prompt)", stacklevel=2)
        tokens = self.max_new_tokens or max_new_tokens_for(dataset)
        if dataset not in self._told:
            self._told.add(dataset)
            log.warning("AkiVLMEval: %s answers with max_new_tokens=%d", dataset, tokens)
        return answer(self.model, self.processor, text, images, tokens)


def register() -> None:
    """Make ``AkiVLMEval`` a class VLMEvalKit's ``--config`` can name."""
    import vlmeval.vlm

    vlmeval.vlm.AkiVLMEval = AkiVLMEval


def failures(work_dir: str | Path, models: list[str], datasets: list[str]) -> list[str]:
    """Each model x dataset that VLMEvalKit's ``status.json`` records as failed or left unscored."""
    out = []
    for model in models:
        status_file = Path(work_dir) / model / "status.json"
        status = json.loads(status_file.read_text()).get("datasets", {}) if status_file.exists() else {}
        for name in datasets:
            entry = status.get(name)
            if entry is None:
                out.append(f"{model} x {name}: no status recorded in {status_file}")
            elif entry.get("error_message"):
                out.append(f"{model} x {name}: {entry['error_message']}")
            elif not entry.get("metrics") and entry.get("skip_reason") != "mode_infer":
                out.append(f"{model} x {name}: not scored ({entry.get('skip_reason') or 'no metrics'})")
    return out


def main(argv: list[str] | None = None) -> int:
    """VLMEvalKit's ``run.py`` with aki registered; 1 when a model x dataset failed."""
    register()
    from vlmeval import run

    sys.argv = [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]
    args = run.parse_args()
    run.run_task(args)  # fills args.model / args.data from --config, args.work_dir from MMEVAL_ROOT
    if args.api_mode or int(os.environ.get("RANK", 0)) != 0:
        return 0
    failed = failures(args.work_dir, list(args.model or []), list(args.data or []))
    for line in failed:
        print(f"aki.eval.toolkits.vlmevalkit: error: {line}; VLMEvalKit's log under {args.work_dir}/logs "
              "has the traceback", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
