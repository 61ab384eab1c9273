"""``aki eval``: greedy evaluation of a saved model on CV-Bench / POPE / open-question files."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def eval_cmd(
    model_dir: Path = typer.Argument(
        ..., help="directory saved by save_pretrained (model + processor)"
    ),
    data: Path = typer.Option(
        ..., "--data", help="dataset root (with test/) or the directory of the benchmark files"
    ),
    out: Path = typer.Option(
        None, "--out", help="where predictions and scores go; default MODEL_DIR/eval"
    ),
    split: list[str] = typer.Option(
        None, "--split", help="benchmark file(s); default cvbench.jsonl pope.jsonl attributes.jsonl"
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    max_new_tokens: int = typer.Option(8, "--max-new-tokens", min=1),
    limit: int = typer.Option(None, "--limit", min=1, help="first N rows of each file"),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda"),
    dtype: str = typer.Option(
        None, "--dtype", help="float32 / bfloat16 / float16 (default: as saved)"
    ),
) -> None:
    """Evaluate MODEL_DIR: greedy, batched; prints and writes the scores (percentages)."""
    import torch

    from aki.eval.runner import DEFAULT_SPLITS, evaluate

    try:
        from aki import AkiForConditionalGeneration, AkiProcessor
    except ImportError:  # the top-level re-exports may not be there yet
        from aki.model import AkiForConditionalGeneration
        from aki.processing import AkiProcessor

    kwargs = {"dtype": getattr(torch, dtype)} if dtype else {}
    model = AkiForConditionalGeneration.from_pretrained(model_dir, **kwargs).to(device)
    processor = AkiProcessor.from_pretrained(model_dir)
    results = evaluate(
        model, processor, data, split_files=tuple(split) if split else DEFAULT_SPLITS,
        batch_size=batch_size, max_new_tokens=max_new_tokens, limit=limit,
        output_dir=out if out is not None else model_dir / "eval", progress=False,
    )  # fmt: skip
    typer.echo(summary(results))
    typer.echo(f"predictions and scores.json in {out if out is not None else model_dir / 'eval'}")


def summary(results: dict) -> str:
    """A few lines with the headline numbers of :func:`aki.eval.runner.evaluate`'s result."""

    def f(x):
        return "n/a" if x is None else f"{x:.1f}"

    lines = []
    for name, r in results.items():
        if not isinstance(r, dict):
            continue
        if "2D" in r:
            lines.append(
                f"{name}: overall {f(r['overall'])}  2D {f(r['2D'])}  3D {f(r['3D'])}  per task {json.dumps({k: round(v, 1) for k, v in r.get('per_task', {}).items()})}"
            )
            lines += [f"  note: {n}" for n in r.get("notes", [])]
        elif "overall" in r and isinstance(r["overall"], dict):
            cats = [c for c in r if c not in ("overall", "average")]
            for c in [*cats, "overall"]:
                m = r[c]
                lines.append(
                    f"{name}/{c}: acc {f(m['accuracy'])}  prec {f(m['precision'])}  rec {f(m['recall'])}  f1 {f(m['f1'])}  yes {f(m['yes_ratio'])}"
                )
        elif "accuracy" in r:
            lines.append(
                f"{name}: exact match {f(r['accuracy'])}  per task {json.dumps({k: round(v, 1) for k, v in r.get('per_task', {}).items()})}"
            )
    if results.get("skipped"):
        lines.append(f"skipped (missing): {results['skipped']}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
