"""Greedy batched answers from an aki model, the way every evaluation here asks them.

Each row becomes one user message (its image(s), then the text, or the reverse for ``order="T&I"``)
rendered by the processor's chat template; a batch goes through ``processor(text=, images=,
padding_side="left")`` and ``model.generate(..., do_sample=False)`` with the processor's EOS ids,
so the model applies its own attention rule to the prompt. Only the new tokens are decoded.
"""

from __future__ import annotations

from collections.abc import Sequence

from aki.prompts import user_message

GENERATE_KEYS = ("input_ids", "attention_mask", "pixel_values", "segments")


def model_device_dtype(model):
    """The device and floating dtype to move inputs to (None when the model does not say)."""
    import torch

    device = getattr(model, "device", None)
    dtype = getattr(model, "dtype", None)
    if device is None or dtype is None:
        try:
            p = next(model.parameters())
            device, dtype = device or p.device, dtype or p.dtype
        except (AttributeError, StopIteration, TypeError):
            pass
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        dtype = None
    return device, dtype


def prompt_inputs(model, processor, prompts: Sequence[str], images: Sequence, order: str = "I&T") -> dict:
    """Model inputs for one batch of user turns ending in the generation prompt, on the model's
    device (left padded). ``images[i]``: one PIL image, a list of them, or None (text only)."""
    import torch

    per_row = [[] if img is None else (list(img) if isinstance(img, (list, tuple)) else [img]) for img in images]
    texts = [
        processor.apply_chat_template([user_message(p, len(imgs), order)], add_generation_prompt=True,
                                      tokenize=False)
        for p, imgs in zip(prompts, per_row, strict=True)
    ]
    has_images = any(per_row)
    batch = processor(text=texts, images=per_row if has_images else None, padding_side="left",
                      return_tensors="pt")
    device, dtype = model_device_dtype(model)
    kwargs = {}
    for k in GENERATE_KEYS:
        if k in batch and batch[k] is not None:
            v = batch[k]
            if isinstance(v, torch.Tensor):
                if device is not None:
                    v = v.to(device)
                if k == "pixel_values" and dtype is not None:
                    v = v.to(dtype)
            kwargs[k] = v
    return kwargs


def generate_batch(model, processor, prompts: Sequence[str], images: Sequence, max_new_tokens: int = 8,
                   order: str = "I&T") -> list[str]:
    """Greedy answers for one batch.

    ``images[i]`` is the i-th row's image: one PIL image, a list of them, or None (text only).
    """
    import torch

    kwargs = prompt_inputs(model, processor, prompts, images, order)
    eos = getattr(processor, "eos_token_ids", None)
    extra = {"eos_token_id": list(eos)} if eos else {}
    with torch.inference_mode():
        out = model.generate(**kwargs, max_new_tokens=max_new_tokens, do_sample=False, **extra)
    new = out[:, kwargs["input_ids"].shape[1]:]
    return [t.strip() for t in processor.batch_decode(new, skip_special_tokens=True)]


def continuation_logprob(model, processor, prompt: str, image, continuation: str,
                         order: str = "I&T") -> tuple[float, bool]:
    """``(log p(continuation | prompt), whether greedy decoding gives exactly it)``: the answer's
    tokens follow the generation prompt as ANSWER tokens, so the prompt is read under the model's
    rule exactly as :func:`generate_batch` reads it (what likelihood-scored tasks ask for)."""
    import torch

    from aki.masks import Segment

    kwargs = prompt_inputs(model, processor, [prompt], [image], order)
    ids = kwargs["input_ids"]
    cont = processor.tokenizer(continuation, add_special_tokens=False, return_tensors="pt")["input_ids"].to(ids.device)
    n = cont.shape[1]
    if n == 0:
        raise ValueError("the continuation is empty: there is nothing to score")
    kwargs["input_ids"] = torch.cat([ids, cont], dim=1)
    kwargs["attention_mask"] = torch.cat([kwargs["attention_mask"], torch.ones_like(cont)], dim=1)
    kwargs["segments"] = torch.cat([kwargs["segments"], torch.full_like(cont, int(Segment.ANSWER))], dim=1)
    with torch.inference_mode():
        logits = model(**kwargs).logits[0, -n - 1:-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    total = float(logp.gather(-1, cont[0, :, None]).sum())
    return total, bool((logp.argmax(-1) == cont[0]).all())


__all__ = ["GENERATE_KEYS", "continuation_logprob", "generate_batch", "model_device_dtype", "prompt_inputs"]
