"""``aki convert-official``: turn the official AKI checkpoint into this library's format."""

from __future__ import annotations

from pathlib import Path

import typer


def convert_official(
    src: Path = typer.Argument(..., help="official checkpoint directory or weights file"),
    dst: Path = typer.Argument(..., help="output directory (save_pretrained format)"),
    text_config: Path = typer.Option(None, help="the LLM's config.json (or its directory); default Phi-3.5-mini shapes"),
    vision_config: Path = typer.Option(None, help="the vision tower's config.json; default SigLIP so400m with shapes read from the weights"),
    vision: str = typer.Option(None, help="SigLIP checkpoint (dir or hub id) when src has no vision_encoder.* weights"),
    image_token_id: int = typer.Option(None, help="id of <image>; default from added_tokens.json, else 32012"),
    resampler_head_dim: int = typer.Option(64, help="head width of the resampler's attention (official: 64)"),
    dtype: str = typer.Option(None, help="save in this dtype: float32, bfloat16, float16"),
) -> None:
    """Convert an official AKI checkpoint (vision_encoder / vision_tokenizer / lang_model keys)."""
    import torch

    from aki.model.convert_official import convert_official_checkpoint

    torch_dtype = getattr(torch, dtype) if dtype else None
    try:
        model = convert_official_checkpoint(src, dst, text_config=text_config, vision_config=vision_config,
                                            vision=vision,
                                            image_token_id=image_token_id, dtype=torch_dtype,
                                            resampler_head_dim=resampler_head_dim)
    except (FileNotFoundError, ValueError, KeyError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    n = sum(p.numel() for p in model.parameters())
    typer.echo(f"converted {src} -> {dst} ({n / 1e6:.1f}M parameters)")


def register(app: typer.Typer) -> None:
    app.command("convert-official")(convert_official)
