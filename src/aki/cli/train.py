"""``aki train CONFIG.yaml [--set key=value ...] [--resume | --resume-or-start | --overwrite]``.

The same command runs in one process or under ``torchrun --nproc_per_node=N -m aki.cli.main
train ...`` (FSDP2 over gloo on CPU, nccl on CUDA). Failures follow the CLI's convention
(:mod:`aki.cli.errors`): a config that cannot run exits 2, anything else 1, one line each.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer


def final_line(summary: dict) -> str:
    """The run's last line: steps, loss, time, records read and skipped by reason, the model."""
    if summary.get("final_loss") is None:
        return f"done: the run had already reached max_steps={summary['steps']}; model in {summary['final_dir']}"
    skipped = summary.get("skipped") or {}
    n_skipped = sum(skipped.values())
    kinds = f" ({', '.join(f'{k}: {v}' for k, v in sorted(skipped.items()))})" if n_skipped else ""
    return (f"done: {summary['steps']} steps, final loss {summary['final_loss']:.4f}, {summary['seconds']:.1f} s; "
            f"{summary.get('records', 0)} records read, {n_skipped} skipped{kinds}; model in {summary['final_dir']}")


def train_command(
    config: Path = typer.Argument(..., help="YAML training config"),
    set_: list[str] = typer.Option(None, "--set", help="override a config key: --set lr=3e-5 --set data.packing=true"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in output_dir from its latest checkpoint "
                                "(its settings must match; see docs)"),
    resume_or_start: bool = typer.Option(False, "--resume-or-start",
                                         help="like --resume, but start a new run when output_dir has no checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="start over in an output_dir that holds a run"),
) -> None:
    """Train one stage (PT or SFT) from a YAML config; writes metrics.jsonl, checkpoints and final/."""
    from aki.training import ConfigError, load_config, train

    if resume and resume_or_start:
        raise ConfigError("--resume and --resume-or-start: pass one (--resume-or-start also resumes).")
    cfg = load_config(config, set_ or [])
    summary = train(cfg, resume=resume or resume_or_start, overwrite=overwrite, start_if_missing=resume_or_start)
    if os.environ.get("RANK", "0") == "0":
        typer.echo(final_line(summary))


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
