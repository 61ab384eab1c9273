"""The benchmarks ``aki eval`` knows, where their files are looked for, and how a file becomes rows.

Each benchmark is one module (``aki.eval.<name>``) with ``prepare(row)`` (check a row, raise
:class:`~aki.eval.items.BadRow`), ``prompt(row)`` (the text the model reads after the image),
``score(rows[, judge])`` and ``headline(scores)`` (its Table 1 column(s)), plus
``MAX_NEW_TOKENS``. The benchmark is always the one the user names (``--bench``), never guessed
from a file's name; the layout is then read from the file's type (``.tsv`` = VLMEvalKit,
otherwise the benchmark's own / Hugging Face columns).

File lookup under ``--data-root DIR`` (first hit wins): ``DIR/<VLMEvalKit name>.tsv``, then the
benchmark's folder names (e.g. ``DIR/MME/``, every ``.parquet`` / ``.jsonl`` / ``.json`` below
it). ``--bench NAME=PATH`` names the file or folder directly.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from aki.eval.items import BadRow, BenchmarkFileError
from aki.eval.layouts import published_rows, vlmevalkit_rows
from aki.eval.readers.tables import read_table, table_files


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    module_name: str
    tsv: str
    folders: tuple[str, ...]
    judge: bool = False

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(f"aki.eval.{self.module_name}")

    @property
    def max_new_tokens(self) -> int:
        return int(self.module.MAX_NEW_TOKENS)

    def candidates(self, data_root: Path) -> list[Path]:
        return [data_root / f"{self.tsv}.tsv", *(data_root / f for f in self.folders)]

    def locate(self, data_root: Path) -> list[Path]:
        """The benchmark's files under ``data_root`` (or ``data_root`` itself when it is a file)."""
        if data_root.is_file():
            return [data_root]
        for candidate in self.candidates(data_root):
            if candidate.is_file():
                return [candidate]
            if candidate.is_dir():
                files = table_files(candidate)
                if files:
                    return files
        tried = ", ".join(str(c) for c in self.candidates(data_root))
        raise BenchmarkFileError(
            f"no {self.title} file found (looked for {tried}); put the benchmark's published file "
            f"there, or name it with --bench {self.name}=PATH"
        )

    def read(self, files: list[Path], *, image_root: Path | None = None, data_root: Path | None = None,
             limit: int | None = None) -> tuple[list[dict], list[BadRow], list[str]]:
        """Rows ready for prompting and scoring, the bad rows, and notes about the reading."""
        bad: list[BadRow] = []
        rows: list[dict] = []
        for path in files:
            folders = [p for p in (image_root, path.parent, data_root) if p is not None]
            raws = read_table(path, bad)
            mapped = vlmevalkit_rows(raws, folders, bad) if path.suffix == ".tsv" else \
                published_rows(self.name, raws, folders, bad)
            rows.extend(mapped)
        module = self.module
        ready, seen = [], set()
        for row in rows:
            if limit is not None and len(ready) >= limit:
                break
            try:
                row = module.prepare(row)
            except BadRow as err:
                bad.append(err)
                continue
            if row["index"] in seen:
                bad.append(BadRow(row["where"], f"index {row['index']!r} appears twice; indices must be unique"))
                continue
            seen.add(row["index"])
            ready.append(row)
        notes: list[str] = []
        if hasattr(module, "expand"):
            ready, notes = module.expand(ready)
        return ready, bad, notes


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("mme", "MME", "mme", "MME", ("MME",)),
    Benchmark("mmbench", "MMBench", "mmbench", "MMBench_DEV_EN", ("MMBench", "MMBench_DEV_EN")),
    Benchmark("seed", "SEED-Bench (image)", "seedbench", "SEEDBench_IMG", ("SEED-Bench", "SEEDBench_IMG")),
    Benchmark("llava-w", "LLaVA-Bench (in-the-wild)", "llavabench", "LLaVABench",
              ("llava-bench-in-the-wild", "LLaVABench"), judge=True),
    Benchmark("mmmu", "MMMU", "mmmu", "MMMU_DEV_VAL", ("MMMU", "MMMU_DEV_VAL")),
    Benchmark("mathvista", "MathVista (testmini)", "mathvista", "MathVista_MINI", ("MathVista", "MathVista_MINI")),
    Benchmark("pope", "POPE", "pope", "POPE", ("POPE",)),
    Benchmark("mmvet", "MM-Vet", "mmvet", "MMVet", ("MMVet", "MM-Vet")),
    Benchmark("realworldqa", "RealWorldQA", "realworldqa", "RealWorldQA", ("RealWorldQA",)),
    Benchmark("cvbench", "CV-Bench", "cvbench", "CV-Bench", ("CV-Bench",)),
)}
ALIASES = {
    "seedbench": "seed", "seed-i": "seed", "llavabench": "llava-w", "llava-bench": "llava-w",
    "mathvista-mini": "mathvista", "mm-vet": "mmvet", "cv-bench": "cvbench", "mmb": "mmbench",
}  # fmt: skip
SYNTH = "synth"
"""The synthetic test split of ``aki data synth`` (CV-Bench, POPE and attribute files)."""
TABLE1_COLUMNS = ("MME-P", "MME-C", "MMBench", "SEED-I", "LLaVA-W", "MMMU", "MathVista", "POPE", "MM-Vet",
                  "RealWorldQA", "CV-Bench2D", "CV-Bench3D")  # fmt: skip
"""The paper's Table 1 columns, in its order."""


def get_benchmark(name: str) -> Benchmark:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; choose from {', '.join([*BENCHMARKS, SYNTH])}")
    return BENCHMARKS[key]


__all__ = ["ALIASES", "BENCHMARKS", "SYNTH", "TABLE1_COLUMNS", "Benchmark", "get_benchmark"]
