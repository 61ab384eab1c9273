"""``aki convert-official``: turn the released AKI checkpoint into this library's format."""

from __future__ import annotations

from pathlib import Path

import typer


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
    dtype: str = typer.Option(None, help="save in this dtype: float32, bfloat16 or float16"),
    overwrite: bool = typer.Option(False, "--overwrite", help="write into a DST folder that already holds files"),
) -> None:
    """Convert the official AKI release (vision_encoder / vision_tokenizer / lang_model keys)."""
    from aki.model.convert_official import convert_official_checkpoint
    from aki.model.loading import parse_dtype

    torch_dtype = parse_dtype(dtype)
    if dst.exists() and not dst.is_dir():
        raise typer.BadParameter(f"DST {str(dst)!r} is a file; pass a folder to write the converted model to.")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise typer.BadParameter(f"DST {str(dst)!r} is SRC itself; pass another folder so the release stays intact.")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise typer.BadParameter(f"DST {str(dst)!r} already holds files; pass an empty or new folder, or --overwrite "
                                 "to write over them.")
    try:
        model, processor = convert_official_checkpoint(
            src, dst, text_config=text_config, vision_config=vision_config, vision=vision, dtype=torch_dtype,
            resampler_head_dim=resampler_head_dim)
    except KeyError as err:  # an unknown parameter name: the message is the key's own
        raise ValueError(f"{err.args[0]}; SRC must be the official AKI release") from None
    n = sum(p.numel() for p in model.parameters())
    vocab = model.config.text_config.vocab_size
    typer.echo(f"converted {src} -> {dst} ({n / 1e6:.1f}M parameters, {vocab} ids, <image> = "
               f"{model.config.image_token_id})")
    if processor is None:
        typer.echo(f"warning: {src} has no tokenizer files, so {dst} has no processor; copy the release's "
                   f"tokenizer files into {src} and convert again.", err=True)


def register(app: typer.Typer) -> None:
    app.command("convert-official")(convert_official)
