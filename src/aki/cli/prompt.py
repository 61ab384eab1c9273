"""``aki prompt``: show how a prompt is rendered, tokenized and labelled with segments."""

from __future__ import annotations

from pathlib import Path

import typer

LETTERS = {-1: "P", 0: "T", 1: "I", 2: "Q", 3: "A"}


def show(
    question: str = typer.Option("What is in the image?", help="the user's text"),
    answer: str = typer.Option(None, help="an assistant answer (shows the training labels)"),
    family: str = typer.Option("phi3", help="backbone family of the tiny tokenizer (phi3, llama3, qwen2, qwen3)"),
    processor: Path = typer.Option(None, help="a saved processor folder instead of a tiny tokenizer"),
    order: str = typer.Option("I&T", help="I&T (image first) or T&I (text first)"),
    images: int = typer.Option(1, min=0, help="number of images in the user turn"),
) -> None:
    """Print the rendered prompt and each token with its segment (T text, I image, Q query, A answer)."""
    from PIL import Image

    from aki.constants import ORDERS
    from aki.processing import AkiProcessor, build_tiny_tokenizer, siglip_image_processor
    from aki.prompts import assistant_message, user_message

    if order not in ORDERS:
        raise typer.BadParameter(f"order must be one of {', '.join(ORDERS)}; got {order!r}.")
    if processor is not None:
        proc = AkiProcessor.from_pretrained(processor)
    else:
        proc = AkiProcessor(siglip_image_processor(16), build_tiny_tokenizer(family), num_image_tokens=4, family=family)
    messages = [user_message(question, images, order)]
    if answer is not None:
        messages.append(assistant_message(answer))
    blank = [Image.new("RGB", (8, 8))] * images
    rendered = proc.apply_chat_template(messages, add_generation_prompt=answer is None)
    batch = proc(images=[blank], text=[rendered])
    typer.echo(f"family={proc.family}  num_image_tokens={proc.num_image_tokens}\n--- rendered ---\n{rendered}\n--- tokens ---")
    ids, segs = batch["input_ids"][0].tolist(), batch["segments"][0].tolist()
    labels = batch["labels"][0].tolist() if "labels" in batch else [-100] * len(ids)
    for tid, seg, lab in zip(ids, segs, labels, strict=True):
        piece = proc.tokenizer.convert_ids_to_tokens(tid)
        typer.echo(f"{LETTERS[seg]}  {tid:>7}  {'loss' if lab != -100 else '    '}  {piece!r}")
    typer.echo("--- layout ---\n" + "".join(LETTERS[s] for s in segs))


def register(app: typer.Typer) -> None:
    app.command("prompt")(show)
