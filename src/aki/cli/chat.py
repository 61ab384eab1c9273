"""``aki chat``: ask a trained model about an image, streaming the answer.

Refused before generating, each with one line naming the fix: an empty question, a model folder
that is not one (:func:`aki.model.loading.load_pretrained`), an unreadable image, a prompt that
leaves no room for the answer in the model's context. An answer that comes out empty (the model
ended at once) is said, with a non-zero exit, rather than printed as a blank line.
"""

from __future__ import annotations

import threading
from pathlib import Path

import typer


def context_length(model) -> int | None:
    """The LLM's context length (``max_position_embeddings``), when its config states one."""
    value = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    return int(value) if value else None


def check_room(prompt_tokens: int, max_new_tokens: int, context: int | None, n_images: int,
               tokens_per_image: int) -> None:
    """Refuse a prompt that does not leave ``max_new_tokens`` in the context, naming the fix."""
    if context is None or prompt_tokens + max_new_tokens <= context:
        return
    images = (f", of which {n_images} image(s) x {tokens_per_image} tokens" if n_images else "")
    if prompt_tokens >= context:
        raise ValueError(f"the prompt is {prompt_tokens} tokens{images}, but the model reads at most {context} "
                         "(max_position_embeddings); shorten the question or pass fewer images.")
    raise ValueError(f"the prompt is {prompt_tokens} tokens{images}, and with --max-new-tokens {max_new_tokens} "
                     f"it would pass the model's context of {context} tokens; pass --max-new-tokens "
                     f"{context - prompt_tokens} or less, or shorten the question.")


def chat(
    model_dir: Path = typer.Argument(..., help="a directory written by save_pretrained (model + processor), "
                                     "or a training run's output_dir"),
    question: str = typer.Argument(..., help="the question about the image"),
    image: list[Path] = typer.Option(None, "--image", "-i", help="image file(s); one <image> per file"),
    max_new_tokens: int = typer.Option(64, min=1, help="longest answer in tokens"),
    temperature: float = typer.Option(0.0, min=0.0, help="0 = greedy decoding (as in the paper's evaluation)"),
    top_p: float = typer.Option(1.0, min=0.0, max=1.0, help="nucleus sampling threshold (with temperature > 0)"),
    seed: int = typer.Option(0, help="random seed for sampling"),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu, cuda or cuda:1"),
    dtype: str = typer.Option(None, "--dtype", help="float32 / bfloat16 / float16 (default: as saved)"),
) -> None:
    """Answer QUESTION about the image(s), printing tokens as they are generated."""
    if not question.strip():
        raise typer.BadParameter("the question is empty; ask something about the image, e.g. "
                                 "aki chat MODEL_DIR \"What is in the image?\" --image photo.png")
    import torch
    from transformers import TextIteratorStreamer

    from aki.model.loading import load_pretrained
    from aki.processing import load_image
    from aki.prompts import user_message

    model, processor = load_pretrained(model_dir, device=device, dtype=dtype, key="MODEL_DIR")
    images = [load_image(p) for p in (image or [])]
    torch.manual_seed(seed)
    prompt = processor.apply_chat_template([user_message(question, len(images))], add_generation_prompt=True)
    batch = processor(images=[images] if images else None, text=[prompt], return_tensors="pt")
    check_room(int(batch["input_ids"].shape[1]), max_new_tokens, context_length(model), len(images),
               processor.num_image_tokens)
    batch = batch.to(model.device)
    streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    result: dict = {}

    def generate() -> None:
        try:
            result["ids"] = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                temperature=max(temperature, 1e-5), top_p=top_p, eos_token_id=processor.eos_token_ids,
                streamer=streamer)
        except BaseException as err:  # re-raised below, in the command's thread
            result["error"] = err
            streamer.end()

    worker = threading.Thread(target=generate, daemon=True)
    worker.start()
    text = ""
    for piece in streamer:
        text += piece
        typer.echo(piece, nl=False)
    worker.join()
    if "error" in result:
        raise result["error"]
    if text.strip():
        typer.echo("")
        return
    new = result["ids"][0, batch["input_ids"].shape[1]:].tolist()
    if not new or new[0] in processor.eos_token_ids:
        why = "it ended the answer at once (its first token was end-of-sequence)"
    else:
        shown = processor.tokenizer.decode(new, skip_special_tokens=True)
        kind = "whitespace only" if shown else "special tokens only"
        why = f"its {len(new)} new token(s) are {kind} ({processor.tokenizer.decode(new)!r})"
    raise RuntimeError(f"the model produced no answer: {why}; the model may be undertrained, or try sampling "
                       "(--temperature 0.7) or another question.")


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)
