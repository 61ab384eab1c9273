"""``aki analyze``: where a trained model's image tokens look, and how question-aware they are."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def analyze(
    model_dir: Path = typer.Argument(..., help="a save_pretrained folder (model + processor), or a training "
                                     "run's output_dir"),
    data: Path = typer.Option(..., help="a synthetic data folder (aki data synth) or its test/ folder"),
    n: int = typer.Option(32, min=2, help="number of CV-Bench-style test items to analyse (at least 2)"),
) -> None:
    """Per layer: the share of image-token attention on text / image / question keys, and how much
    the image tokens' final states change when only the question changes."""
    from aki.analysis import attention_by_segment, question_sensitivity
    from aki.model.loading import load_pretrained
    from aki.processing import load_image

    if not data.is_dir():
        raise typer.BadParameter(f"--data {str(data)!r} is not a folder; point it at a folder written by "
                                 "`aki data synth --out DIR` (or its test/ folder).")
    test = data / "test" if (data / "test").is_dir() else data
    bench = test / "cvbench.jsonl"
    if not bench.exists():
        raise typer.BadParameter(f"--data {str(data)!r} holds no test/cvbench.jsonl; point it at a folder written "
                                 "by `aki data synth --out DIR` with --n-test > 0.")
    rows = []
    for k, line in enumerate(bench.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and len(rows) < n:
            try:
                row = json.loads(line)
                rows.append((test / row["image"], row["prompt"]))
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{str(bench)!r} line {k} is not a CV-Bench row with 'image' and 'prompt' "
                                 f"({type(err).__name__}: {err}); write the folder again with `aki data synth`.") \
                    from None
    if len(rows) < 2:
        raise ValueError(f"{str(bench)!r} has {len(rows)} row(s), and the analysis compares at least 2; write "
                         "the folder again with `aki data synth --n-test N`.")
    images = [load_image(path) for path, _ in rows]
    prompts = [prompt for _, prompt in rows]
    model, processor = load_pretrained(model_dir, key="MODEL_DIR")
    shares = attention_by_segment(model, processor, images, prompts)
    typer.echo(f"rule: {model.config.attention_rule}; image-token attention share per layer (mean over {len(rows)} items)")
    typer.echo("layer  text   image  question")
    for i in range(len(shares["text"])):
        typer.echo(f"{i:>5}  {shares['text'][i]:.3f}  {shares['image'][i]:.3f}  {shares['query'][i]:.3f}")
    sens = question_sensitivity(model, processor, images[0], prompts[: min(4, len(prompts))])
    typer.echo(f"question sensitivity of image tokens (relative change of final states): {sens:.4f}")


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
