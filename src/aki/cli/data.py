"""``aki data``: build and check datasets (``aki data synth``: synthetic vision-centric scenes;
``aki data check`` and ``aki data kale`` live in :mod:`aki.cli.datacheck`)."""

from __future__ import annotations

import time
from pathlib import Path

import typer


def synth(
    out: Path = typer.Option(..., "--out", help="output directory"),
    n_train: int = typer.Option(2000, "--n-train", min=0, help="training scenes"),
    n_test: int = typer.Option(500, "--n-test", min=0, help="test scenes"),
    seed: int = typer.Option(0, "--seed", help="random seed (same seed -> identical files)"),
    image_size: int = typer.Option(64, "--image-size", min=32, help="image side in pixels"),
    shard_size: int = typer.Option(
        1000, "--shard-size", min=1, help="samples per PT webdataset shard"
    ),
    pope_per_image: int = typer.Option(
        3, "--pope-per-image", min=1, help="POPE positives (and negatives) per image and category"
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="remove the dataset already in --out before writing"
    ),
    workers: int = typer.Option(
        None, "--workers", min=1, help="rendering processes (default: the usable CPUs, at most 4)"
    ),
) -> None:
    """Generate synthetic scenes with PT captions, SFT questions and CV-Bench/POPE-style test files."""
    from aki.data.synth.writer import generate

    t0 = time.perf_counter()
    try:
        meta = generate(
            out, n_train=n_train, n_test=n_test, seed=seed, image_size=image_size,
            shard_size=shard_size, pope_per_image=pope_per_image, overwrite=overwrite,
            workers=workers,
        )  # fmt: skip
    except (FileExistsError, NotADirectoryError) as err:
        typer.echo(f"aki data synth: error: {err}", err=True)
        raise typer.Exit(2) from err
    dt = time.perf_counter() - t0
    tr, te = meta["train"], meta["test"]
    n = tr["scenes"] + te["scenes"]
    typer.echo(f"wrote {out} in {dt:.1f} s ({n / max(dt, 1e-9):.0f} scenes/s)")
    if tr.get("scenes"):
        typer.echo(
            f"  train: {tr['scenes']} scenes, {tr['pt_captions']} captions, {tr['sft_items']} SFT items, {len(tr['pt_shards'])} webdataset shards (pt-*.tar)"
        )
    if te.get("scenes"):
        typer.echo(
            f"  test: {te['scenes']} scenes, CV-Bench {te['cvbench_total']} {te['cvbench']}, "
            f"POPE {te['pope_total']}, open {te['attributes_total']} {te['attributes']}"
        )


def register(app: typer.Typer) -> None:
    from aki.cli import datacheck

    data_app = typer.Typer(help="Build and check datasets.", no_args_is_help=True)
    data_app.command("synth")(synth)
    data_app.command("check")(datacheck.check)
    data_app.command("kale")(datacheck.kale)
    app.add_typer(data_app, name="data")
