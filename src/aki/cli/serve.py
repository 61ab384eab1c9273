"""``aki serve``: put a trained model behind an OpenAI-compatible API (batched, streamed)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from aki.cli.errors import CliError


def serve(
    model_dir: Path = typer.Argument(..., help="a directory written by save_pretrained (model + processor)"),
    host: str = typer.Option("127.0.0.1", help="address to bind; the default answers this machine only"),
    port: int = typer.Option(8000, help="TCP port"),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N"),
    dtype: str = typer.Option("auto", help="auto (as saved), float32, bfloat16 or float16"),
    served_model_name: str = typer.Option(None, help="the name clients send as `model` (default: the folder's name)"),
    api_key: str = typer.Option(None, envvar="AKI_API_KEY", show_envvar=True,
                                help="require 'Authorization: Bearer KEY' on /v1 routes (prefer the env var: "
                                     "a command-line key shows in the process list)"),
    max_batch_size: int = typer.Option(8, min=1, help="most requests in one generate call"),
    batch_window_ms: float = typer.Option(10.0, min=0.0, help="how long to collect requests for a batch"),
    max_queue: int = typer.Option(256, min=1, help="requests waiting beyond this are refused with 429"),
    max_images: int = typer.Option(1, min=0, help="images per request (the paper's models read one)"),
    max_image_bytes: int = typer.Option(10 * 2**20, min=1, help="encoded size of one image"),
    max_image_pixels: int = typer.Option(40_000_000, min=1, help="width x height of one image"),
    max_request_bytes: int = typer.Option(32 * 2**20, min=1, help="size of a request body"),
    default_max_tokens: int = typer.Option(512, min=1, help="answer limit when a request sets no max_tokens"),
    request_timeout: float = typer.Option(300.0, min=0.001, help="seconds per request, queueing included (then 408)"),
    allow_remote_images: bool = typer.Option(False, help="also fetch http(s) image URLs (off: data: URLs only)"),
    log_level: str = typer.Option("info", help="uvicorn's log level"),
) -> None:
    """Serve MODEL_DIR with an OpenAI-compatible API: POST /v1/chat/completions, GET /v1/models, GET /health."""
    try:
        import uvicorn

        from aki.model.loading import load_pretrained
        from aki.serving.engine import GenerationEngine
        from aki.serving.image_inputs import ImageLimits
        from aki.serving.server import ServerSettings, create_app
    except ImportError as err:
        raise CliError(f"aki serve needs FastAPI and uvicorn ({err.name} is missing); install them with "
                       "pip install 'aki[serve]'.") from None
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        typer.secho(f"aki serve: warning: binding {host} without --api-key: anyone who can reach this machine "
                    "can use the model.", fg=typer.colors.YELLOW, err=True)
    sock = _bind(host, port)  # first: a busy port fails before a long model load
    try:
        model, processor = load_pretrained(model_dir, device=device, dtype=None if dtype == "auto" else dtype,
                                           key="MODEL_DIR")
    except BaseException:
        sock.close()
        raise
    engine = GenerationEngine(model, processor, max_batch_size=max_batch_size,
                              batch_window_s=batch_window_ms / 1000, max_queue=max_queue)
    settings = ServerSettings(
        model_name=served_model_name or Path(model_dir).resolve().name,
        api_key=api_key or None,
        max_request_bytes=max_request_bytes,
        images=ImageLimits(max_bytes=max_image_bytes, max_pixels=max_image_pixels,
                           allow_remote=allow_remote_images),
        max_images=max_images,
        default_max_tokens=default_max_tokens,
        request_timeout_s=request_timeout,
    )
    app = create_app(engine, settings)
    typer.echo(f"aki serve: {settings.model_name!r} ({model.config.attention_rule}, {model.device}) on "
               f"http://{host}:{port}/v1 (batches of up to {max_batch_size}, {batch_window_ms:g} ms window)",
               err=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level)
    uvicorn.Server(config).run(sockets=[sock])


def _bind(host: str, port: int):
    """The listening socket, bound here so that a busy port is this command's one-line error."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as err:
        raise CliError(f"cannot listen on {host}:{port} ({err.strerror or err}); pick a free --port or stop "
                       "what uses it.") from None
    return sock


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
