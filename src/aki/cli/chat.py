"""``aki chat``: ask a trained model about an image, streaming the answer."""

from __future__ import annotations

import threading
from pathlib import Path

import typer


def chat(
    model_dir: Path = typer.Argument(..., help="a directory written by save_pretrained (model + processor)"),
    question: str = typer.Argument(..., help="the question about the image"),
    image: list[Path] = typer.Option(None, "--image", "-i", help="image file(s); one <image> per file"),
    max_new_tokens: int = typer.Option(64, help="longest answer in tokens"),
    temperature: float = typer.Option(0.0, help="0 = greedy decoding (as in the paper's evaluation)"),
    top_p: float = typer.Option(1.0, help="nucleus sampling threshold (with temperature > 0)"),
    seed: int = typer.Option(0, help="random seed for sampling"),
) -> None:
    """Answer QUESTION about the image(s), printing tokens as they are generated."""
    import torch
    from transformers import TextIteratorStreamer

    from aki import AkiForConditionalGeneration, AkiProcessor
    from aki.processing import ImageLoadError, load_image
    from aki.prompts import user_message

    if not model_dir.exists():
        raise typer.BadParameter(f"model directory {model_dir} does not exist; train one with "
                                 "`aki quickstart` or `aki train`, or convert one with `aki convert-official`.")
    torch.manual_seed(seed)
    processor = AkiProcessor.from_pretrained(str(model_dir))
    model = AkiForConditionalGeneration.from_pretrained(str(model_dir)).eval()
    try:
        images = [load_image(p) for p in (image or [])]
    except ImageLoadError as err:
        typer.echo(f"aki chat: error: {err}", err=True)
        raise typer.Exit(1) from err
    prompt = processor.apply_chat_template([user_message(question, len(images))], add_generation_prompt=True)
    batch = processor(images=[images] if images else None, text=[prompt], return_tensors="pt")
    streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(
        **batch,
        max_new_tokens=max_new_tokens,
        do_sample=temperature > 0,
        temperature=max(temperature, 1e-5),
        top_p=top_p,
        eos_token_id=processor.eos_token_ids,
        streamer=streamer,
    )
    worker = threading.Thread(target=lambda: model.generate(**kwargs), daemon=True)
    worker.start()
    for piece in streamer:
        typer.echo(piece, nl=False)
    worker.join()
    typer.echo("")


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)
