"""``aki convert-official``: turn the released AKI checkpoint into this library's format."""

from __future__ import annotations

from pathlib import Path

import typer

DTYPES = ("float32", "bfloat16", "float16")


def convert_official(
    src: Path = typer.Argument(..., help="the release's folder (weights, config.json, tokenizer files)"),
    dst: Path = typer.Argument(..., help="output folder (save_pretrained format, with the processor)"),
    text_config: Path = typer.Option(
        None, help="the LLM's config.json (or its folder) when SRC/config.json's lang_model_path is not "
        "a local folder or in the HF cache (AKI-4B: microsoft/Phi-3.5-mini-instruct)"),
    vision_config: Path = typer.Option(
        None, help="the vision tower's config.json; default: SigLIP so400m with the shapes read from the weights"),
    vision: str = typer.Option(None, help="a SigLIP folder, for checkpoints without vision_encoder.* weights"),
    resampler_head_dim: int = typer.Option(64, help="head width of the resampler's attention (the release: 64)"),
    dtype: str = typer.Option(None, help=f"save in this dtype: {', '.join(DTYPES)}"),
) -> None:
    """Convert the official AKI release (vision_encoder / vision_tokenizer / lang_model keys)."""
    import torch

    from aki.model.convert_official import ConversionError, convert_official_checkpoint

    if dtype is not None and dtype not in DTYPES:
        typer.echo(f"aki convert-official: error: --dtype {dtype!r} is not one of {', '.join(DTYPES)}.", err=True)
        raise typer.Exit(1)
    try:
        model, processor = convert_official_checkpoint(
            src, dst, text_config=text_config, vision_config=vision_config, vision=vision,
            dtype=getattr(torch, dtype) if dtype else None, resampler_head_dim=resampler_head_dim)
    except (FileNotFoundError, ConversionError, KeyError) as err:
        typer.echo(f"aki convert-official: error: {err}", err=True)
        raise typer.Exit(1) from err
    n = sum(p.numel() for p in model.parameters())
    vocab = model.config.text_config.vocab_size
    typer.echo(f"converted {src} -> {dst} ({n / 1e6:.1f}M parameters, {vocab} ids, <image> = "
               f"{model.config.image_token_id})")
    if processor is None:
        typer.echo(f"warning: {src} has no tokenizer files, so {dst} has no processor; copy the release's "
                   f"tokenizer files into {src} and convert again.", err=True)


def register(app: typer.Typer) -> None:
    app.command("convert-official")(convert_official)
