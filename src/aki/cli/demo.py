"""``aki demo``: a browser chat about an image that shows which question words the image tokens read."""

from __future__ import annotations

from pathlib import Path

import typer

from aki.cli.errors import CliError


def demo(
    model_dir: Path = typer.Argument(..., help="a directory written by save_pretrained (model + processor)"),
    host: str = typer.Option("127.0.0.1", help="address to bind; the default answers this machine only"),
    port: int = typer.Option(7860, help="TCP port"),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N"),
    dtype: str = typer.Option("auto", help="auto (as saved), float32, bfloat16 or float16"),
    max_new_tokens: int = typer.Option(128, min=1, help="longest answer in tokens"),
    max_upload_mb: float = typer.Option(10.0, min=0.01, help="largest image upload"),
    max_image_pixels: int = typer.Option(40_000_000, min=1, help="width x height of an uploaded image"),
) -> None:
    """Chat with MODEL_DIR about an image in the browser; see which question words its image tokens read."""
    try:
        import gradio  # noqa: F401

        from aki.model.loading import load_pretrained
        from aki.serving.demo import DemoModel, launch
    except ImportError as err:
        raise CliError(f"aki demo needs Gradio ({err.name} is missing); install it with pip install 'aki[demo]'.") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(f"aki demo: warning: binding {host}: anyone who can reach this machine can use the model.",
                    fg=typer.colors.YELLOW, err=True)
    model, processor = load_pretrained(model_dir, device=device, dtype=None if dtype == "auto" else dtype,
                                       key="MODEL_DIR")
    launch(DemoModel(model, processor, max_new_tokens=max_new_tokens, max_image_pixels=max_image_pixels),
           host=host, port=port, max_upload_mb=max_upload_mb, title=f"AKI demo: {Path(model_dir).resolve().name}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
