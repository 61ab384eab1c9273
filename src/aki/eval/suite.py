"""``aki eval`` on the paper's benchmarks: read, generate (resumable), score, summarise.

For each benchmark named: its files are located and read (bad rows are reported with file and line
and left out), the rows without a stored prediction are answered in batches (a progress bar with
ETA; each batch is appended to ``<out>/<bench>.predictions.jsonl`` as soon as it is generated, so
a rerun resumes and never asks the model twice), then every row with a prediction is scored and
``<out>/scores.json`` is rewritten. A benchmark that fails (no file, judge down) is reported and the
others still run and are written. Judge benchmarks without a configured judge are skipped, saying so.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aki.eval.benchmarks import SYNTH, Benchmark, get_benchmark
from aki.eval.generation import generate_batch
from aki.eval.items import BadRow, BenchmarkFileError, row_key
from aki.eval.judge import Judge, JudgeConfig, JudgeError
from aki.eval.readers.images import Base64Image

DOMINANT_SHARE = 0.75
"""Warn when one answer covers at least this share of a benchmark's rows."""


@dataclass
class BenchResult:
    """What happened to one benchmark: its scores, or why there are none."""

    name: str
    scores: dict | None = None
    status: str = "scored"  # scored | skipped | failed
    message: str = ""
    rows: int = 0
    scored: int = 0
    generated: int = 0
    bad_rows: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dominant: tuple[str, float] | None = None


def _load_source(src) -> Any:
    from aki.processing import load_image

    if isinstance(src, Base64Image):
        return load_image(src.to_bytes())
    return load_image(src)


def _read_predictions(path: Path, notes: list[str]) -> dict[str, str]:
    done: dict[str, str] = {}
    if not path.exists():
        return done
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            done[str(rec["index"])] = str(rec["prediction"])
        except (json.JSONDecodeError, KeyError, TypeError):
            notes.append(f"{path}:{n}: unreadable stored prediction (e.g. a run stopped mid-write); asked again")
    return done


def dominant_answer(predictions: list[str]) -> tuple[str, float] | None:
    """The most common (normalised) answer and its share, when it covers most rows."""
    if len(predictions) < 8:
        return None
    answer, count = Counter(p.strip().lower().rstrip(".") for p in predictions).most_common(1)[0]
    share = count / len(predictions)
    return (answer, share) if share >= DOMINANT_SHARE else None


def _no_judge(bench: Benchmark) -> BenchResult:
    return BenchResult(bench.name, status="skipped", message=(
        f"{bench.title} is scored by a GPT judge and none is configured; set --judge-model "
        "(and --judge-base-url / --judge-api-key, or AKI_JUDGE_* in the environment)"))


def run_benchmark(model, processor, bench: Benchmark, files: list[Path], out_dir: Path, *,
                  image_root: Path | None = None, data_root: Path | None = None, limit: int | None = None,
                  batch_size: int = 8, max_new_tokens: int | None = None, judge: JudgeConfig | None = None,
                  progress: bool = True, order: str = "I&T") -> BenchResult:
    """One benchmark from its files to scores (see the module docstring)."""
    result = BenchResult(bench.name)
    if bench.judge and judge is None:
        return _no_judge(bench)
    rows, bad, notes = bench.read(files, image_root=image_root, data_root=data_root, limit=limit)
    result.rows, result.notes = len(rows), list(notes)
    pred_path = out_dir / f"{bench.name}.predictions.jsonl"
    done = _read_predictions(pred_path, result.notes)
    todo = [r for r in rows if row_key(r) not in done]
    tokens = max_new_tokens or bench.max_new_tokens
    module = bench.module
    if todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc=bench.name, unit="row",
                   disable=not progress, dynamic_ncols=True)
        with open(pred_path, "a", encoding="utf-8") as sink:
            for start in range(0, len(todo), batch_size):
                chunk, images = [], []
                for row in todo[start : start + batch_size]:
                    try:
                        images.append([_load_source(s) for s in row["images"]])
                        chunk.append(row)
                    except (BadRow, ValueError) as err:  # ImageLoadError is a ValueError
                        bad.append(err if isinstance(err, BadRow) else BadRow(row["where"], str(err)))
                if chunk:
                    prompts = [module.prompt(r) for r in chunk]
                    answers = generate_batch(model, processor, prompts, images, tokens, order)
                    for row, prompt, answer in zip(chunk, prompts, answers, strict=True):
                        done[row_key(row)] = answer
                        sink.write(json.dumps({"index": row["index"], "prediction": answer, "prompt": prompt,
                                               "answer": row.get("answer")}, ensure_ascii=False, default=str) + "\n")
                    sink.flush()
                    result.generated += len(chunk)
                bar.update(len(todo[start : start + batch_size]))
        bar.close()
    result.bad_rows = [str(b) for b in bad]
    scored = [dict(r, prediction=done[row_key(r)]) for r in rows if row_key(r) in done]
    result.scored = len(scored)
    if not scored:
        result.status = "failed"
        result.message = f"no row of {bench.title} could be evaluated" + (
            f" ({len(bad)} bad rows, first: {bad[0]})" if bad else "")
        return result
    if bench.judge:
        result.scores = module.score(scored, Judge(judge, out_dir / f"{bench.name}.judge.jsonl"))
    else:
        result.scores = module.score(scored)
    result.scores["headline"] = module.headline(result.scores)
    result.dominant = dominant_answer([r["prediction"] for r in scored])
    return result


def parse_bench_list(spec: str) -> list[tuple[str, Path | None]]:
    """``"mme,pope=/data/pope.parquet"`` -> ``[("mme", None), ("pope", Path(...))]``."""
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, path = part.partition("=")
        out.append((name.strip(), Path(path.strip()) if path.strip() else None))
    return out


def run_suite(model, processor, benches: list[tuple[str, Path | None]], data_root: Path | None, out_dir: Path, *,
              image_root: Path | None = None, limit: int | None = None, batch_size: int = 8,
              max_new_tokens: int | None = None, judge: JudgeConfig | None = None, progress: bool = True,
              order: str = "I&T", on_result=None) -> dict[str, BenchResult]:
    """Every named benchmark; ``scores.json`` (merged with what the folder already holds) after each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scores_path = out_dir / "scores.json"
    all_scores = json.loads(scores_path.read_text()) if scores_path.exists() else {}
    results: dict[str, BenchResult] = {}
    if hasattr(model, "eval"):
        model.eval()
    for name, path in benches:
        t0 = time.perf_counter()
        if name.lower() == SYNTH:
            from aki.eval.runner import evaluate

            root = path or data_root
            synth = evaluate(model, processor, root, batch_size=batch_size, max_new_tokens=max_new_tokens or 8,
                             limit=limit, output_dir=out_dir, progress=False, order=order)
            for stem in ("cvbench", "pope", "attributes"):
                if stem in synth:
                    res = BenchResult(stem, scores=synth[stem], rows=synth[stem].get("n", 0))
                    res.scored = res.rows
                    results[stem] = res
                    all_scores[stem] = synth[stem]
            scores_path.write_text(json.dumps(all_scores, indent=2, default=str) + "\n")
            continue
        try:
            bench = get_benchmark(name)
            if bench.judge and judge is None:
                results[bench.name] = _no_judge(bench)
                if on_result is not None:
                    on_result(results[bench.name])
                continue
            files = bench.locate(path if path is not None else data_root)
            result = run_benchmark(model, processor, bench, files, out_dir, image_root=image_root,
                                   data_root=data_root, limit=limit, batch_size=batch_size,
                                   max_new_tokens=max_new_tokens, judge=judge, progress=progress, order=order)
        except (BenchmarkFileError, JudgeError, KeyError) as err:
            msg = err.args[0] if isinstance(err, KeyError) else str(err)
            result = BenchResult(name, status="failed", message=msg)
        if result.scores is not None:
            all_scores[result.name] = result.scores
            result.scores["seconds"] = time.perf_counter() - t0
            scores_path.write_text(json.dumps(all_scores, indent=2, default=str) + "\n")
        results[result.name] = result
        if on_result is not None:
            on_result(result)
    return results


__all__ = ["DOMINANT_SHARE", "BenchResult", "dominant_answer", "parse_bench_list", "run_benchmark", "run_suite"]
