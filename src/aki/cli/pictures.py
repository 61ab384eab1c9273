"""``aki pictures``: what MMA changes, drawn for a trained causal / MMA pair (aki.analysis.pictures).

A command of its own: ``aki analyze MODEL_DIR`` takes one model as its argument, so a
sub-command ``aki analyze pictures`` would clash with it."""

from __future__ import annotations

from pathlib import Path

import typer


def pictures(
    mma: Path = typer.Option(..., "--mma", help="the MMA model: a save_pretrained folder or a training run's "
                             "output_dir (e.g. runs/quickstart/seed0/mma/final)"),
    causal: Path = typer.Option(..., "--causal", help="the causal model fine-tuned from the same checkpoint "
                                "(e.g. runs/quickstart/seed0/causal/final)"),
    data: Path = typer.Option(..., "--data", help="a synthetic data folder (aki data synth) or its test/ folder"),
    out: Path = typer.Option(..., "--out", help="the pictures go to OUT/pictures/"),
    n: int = typer.Option(16, "--n", min=1, help="questions per task family for the part-of-speech breakdown"),
) -> None:
    """One image and two questions: the image tokens' attention to each word and over the image,
    and how much their final states differ (0 under causal); plus the paper's Fig. 6, the MMA
    image tokens' attention to question words by part of speech, per task family."""
    from aki.analysis.pictures import write_mma_pictures

    if not data.is_dir():
        raise typer.BadParameter(f"--data {str(data)!r} is not a folder; point it at a folder written by "
                                 "`aki data synth --out DIR` (or its test/ folder).")
    result = write_mma_pictures(mma, causal, data, out, n_per_family=n)
    echo_pictures(result)


def echo_pictures(result: dict) -> None:
    """One line per picture, and the final-state differences."""
    files = result["files"]
    diff = result["final_state_difference"]
    typer.echo(f"pictures: {files['pair']} (one image, two questions)")
    typer.echo(f"          {files['word_classes']} (attention to question words by part of speech)")
    typer.echo(f"          {files['numbers']} (the numbers)")
    typer.echo(f"image tokens' final states, relative difference between the two questions: mma {diff['mma']:.4f}, "
               f"causal {diff['causal']:g} (0 by construction)")


def register(app: typer.Typer) -> None:
    app.command("pictures")(pictures)
