"""``aki pretrain-vision``: pre-train the small SigLIP tower that the offline experiments freeze."""

from __future__ import annotations

from pathlib import Path

import typer


def pretrain_vision_command(
    out: Path = typer.Option(..., "--out", help="folder for the tower (save_pretrained), probe.json, pretrain.json"),
    n_scenes: int = typer.Option(20000, "--scenes", min=1, help="training scenes (rendered in memory)"),
    steps: int = typer.Option(1500, "--steps", min=1, help="optimizer steps"),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    lr: float = typer.Option(2e-3, "--lr", min=0.0),
    seed: int = typer.Option(0, "--seed", help="scenes, initialisation and batch order (same seed -> same tower)"),
    image_size: int = typer.Option(64, "--image-size", min=8),
    patch_size: int = typer.Option(8, "--patch-size", min=1),
    hidden_size: int = typer.Option(128, "--hidden-size", min=8),
    layers: int = typer.Option(4, "--layers", min=1),
    heads: int = typer.Option(4, "--heads", min=1),
    probe_train: int = typer.Option(2000, "--probe-train-scenes", min=1),
    probe_test: int = typer.Option(500, "--probe-test-scenes", min=1),
    probe_steps: int = typer.Option(300, "--probe-steps", min=1),
    threads: int = typer.Option(None, "--threads", min=1, help="torch threads (default: torch's)"),
    workers: int = typer.Option(None, "--workers", min=1, help="rendering processes"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a tower already in --out"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Pre-train a SigLIP vision tower on synthetic scenes with dense per-patch supervision (what
    is seen at each patch, what lies behind it, how many objects share its name), then print
    held-out probes (colour, shape, size, position, count, depth) of it and of the same tower
    untrained. Use the folder as a VLM's frozen tower (`aki quickstart --vision-tower DIR`)."""
    from aki.vision.pretrain import VisionPretrainConfig, pretrain_vision

    if (out / "model.safetensors").exists() and not overwrite:
        typer.echo(f"aki pretrain-vision: error: {out} already holds a tower (model.safetensors), and "
                   "this run would replace it; choose another --out, or pass --overwrite.", err=True)
        raise typer.Exit(2)
    cfg = VisionPretrainConfig(
        out=str(out), n_scenes=n_scenes, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
        image_size=image_size, patch_size=patch_size, hidden_size=hidden_size, layers=layers,
        heads=heads, probe_train_scenes=probe_train, probe_test_scenes=probe_test,
        probe_steps=probe_steps, num_threads=threads, workers=workers, progress=progress,
    )
    try:
        cfg.validate()
    except ValueError as err:
        typer.echo(f"aki pretrain-vision: error: {err}", err=True)
        raise typer.Exit(2) from err
    summary = pretrain_vision(cfg, say=typer.echo)
    typer.echo(f"tower ({summary['parameters'] / 1e6:.2f} M parameters) and probe.json in {out}")


def register(app: typer.Typer) -> None:
    app.command("pretrain-vision")(pretrain_vision_command)
