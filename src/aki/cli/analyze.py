"""``aki analyze``: where a trained model's image tokens look, and how question-aware they are."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def analyze(
    model_dir: Path = typer.Argument(..., help="a save_pretrained folder (model + processor)"),
    data: Path = typer.Option(..., help="a synthetic data folder (aki data synth) or its test/ folder"),
    n: int = typer.Option(32, help="number of CV-Bench-style test items to analyse"),
) -> None:
    """Per layer: the share of image-token attention on text / image / question keys, and how much
    the image tokens' final states change when only the question changes."""
    from aki import AkiForConditionalGeneration, AkiProcessor
    from aki.analysis import attention_by_segment, question_sensitivity
    from aki.processing import load_image

    test = data / "test" if (data / "test").is_dir() else data
    bench = test / "cvbench.jsonl"
    if not bench.exists():
        raise typer.BadParameter(f"{bench} not found; point --data at a folder written by `aki data synth`.")
    rows = [json.loads(line) for line in bench.read_text().splitlines() if line.strip()][:n]
    images = [load_image(test / r["image"]) for r in rows]
    prompts = [r["prompt"] for r in rows]
    model = AkiForConditionalGeneration.from_pretrained(str(model_dir)).eval()
    processor = AkiProcessor.from_pretrained(str(model_dir))
    shares = attention_by_segment(model, processor, images, prompts)
    typer.echo(f"rule: {model.config.attention_rule}; image-token attention share per layer (mean over {len(rows)} items)")
    typer.echo("layer  text   image  question")
    for i in range(len(shares["text"])):
        typer.echo(f"{i:>5}  {shares['text'][i]:.3f}  {shares['image'][i]:.3f}  {shares['query'][i]:.3f}")
    sens = question_sensitivity(model, processor, images[0], prompts[: min(4, len(prompts))])
    typer.echo(f"question sensitivity of image tokens (relative change of final states): {sens:.4f}")


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
