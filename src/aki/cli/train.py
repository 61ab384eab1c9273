"""``aki train CONFIG.yaml [--set key=value ...] [--resume]``: run one training stage.

The same command runs in one process or under ``torchrun --nproc_per_node=N -m aki.cli.main
train ...`` (FSDP2 over gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import os
from pathlib import Path

import typer


def train_command(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="YAML training config"),
    set_: list[str] = typer.Option(None, "--set", help="override a config key: --set lr=3e-5 --set data.packing=true"),
    resume: bool = typer.Option(False, "--resume", help="continue from the latest checkpoint in output_dir"),
    overwrite: bool = typer.Option(False, "--overwrite", help="start over in an output_dir that holds a run"),
) -> None:
    """Train one stage (PT or SFT) from a YAML config; writes metrics.jsonl, checkpoints and final/."""
    from aki.masks import LeakageError
    from aki.training import ConfigError, SkipRateError, load_config, train

    try:
        cfg = load_config(config, set_ or [])
        summary = train(cfg, resume=resume, overwrite=overwrite)
    except (ConfigError, LeakageError, SkipRateError, FileNotFoundError) as err:
        typer.secho(f"aki train: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from err
    if summary.get("final_loss") is not None and os.environ.get("RANK", "0") == "0":
        typer.echo(f"done: {summary['steps']} steps, final loss {summary['final_loss']:.4f}, "
                   f"{summary['seconds']:.1f} s; model in {summary['final_dir']}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
