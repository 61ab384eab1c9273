"""Generation speed: aki's ``generate`` against the bare LLM's own ``generate`` on the same embeddings.

One model (a random AKI model of a chosen size, SigLIP tower + resampler + an LLM of the chosen
family), one batch of chat prompts with one image each (left padded), greedy decoding of exactly
``--new`` tokens. Timed side by side in one run, as medians of interleaved repetitions:

- ``aki batched``: ``model.generate(**batch)`` (image encoding, the rule's prefill mask, decode);
- ``aki batch-1 loop``: the same prompts one at a time;
- ``bare LLM``: ``model.language_model.generate(inputs_embeds=..., attention_mask=...)`` on the
  embeddings aki computes (images already spliced in: the bare LLM does strictly less work).

Printed: tokens/s of each and the ratios ``aki batched / bare LLM`` (target >= 0.95x) and
``batched / batch-1 loop``. With ``--rule causal`` aki's output must equal the bare LLM's (same
embeddings, positions and suppressed tokens); this is checked.

Usage::

    python benchmarks/bench_generation.py                       # llama-like, batch 8, 32 new tokens
    python benchmarks/bench_generation.py --batch 16 --new 64 --repeats 5 --rule causal
    python benchmarks/bench_generation.py --device cuda --hidden 1024 --layers 8
"""

from __future__ import annotations

import argparse
import warnings

import torch

from aki.model.presets import TINY_NUM_IMAGE_TOKENS, sized_text_config, tiny_config
from aki.testing import build_seeded, make_batch
from timing import device_sync, median_times


def build(args):
    text = sized_text_config(args.family, args.vocab, args.hidden, args.layers, max_positions=4096)
    cfg = tiny_config(args.family, args.rule, vocab_size=args.vocab, text_config=text,
                      resampler_config={"num_latents": args.image_tokens})
    model = build_seeded(cfg, 0, args.attn).to(args.device)
    return model.eval()


def batch_for(model, args):
    layouts = []
    for b in range(args.batch):  # a system prompt, one image, questions of different lengths
        layouts.append("T" * 12 + " I " + "Q" * (args.question + 3 * (b % 4)))
    batch = make_batch(model.config, layouts, seed=1)
    return {k: (v.to(args.device) if v is not None else None) for k, v in batch.items()}


def split(batch, model):
    from aki.testing import split_rows

    cpu = {k: (v.cpu() if v is not None else None) for k, v in batch.items()}
    return [{k: (v.to(batch["input_ids"].device) if v is not None else None) for k, v in row.items()}
            for row in split_rows(cpu, model.config)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="llama", choices=["llama", "phi3", "qwen2", "qwen3"])
    parser.add_argument("--rule", default="mma")
    parser.add_argument("--attn", default="sdpa")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--image-tokens", type=int, default=TINY_NUM_IMAGE_TOKENS * 9)
    parser.add_argument("--question", type=int, default=24)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = build(args)
    batch = batch_for(model, args)
    rows = split(batch, model)
    gen = {"max_new_tokens": args.new, "min_new_tokens": args.new, "do_sample": False, "eos_token_id": None,
           "pad_token_id": 0, "suppress_tokens": [model.config.image_token_id]}
    with torch.no_grad():
        embeds = model.embed(batch["input_ids"], batch["pixel_values"])
    llm = model.language_model

    sync = device_sync(args.device)

    outputs = {}

    def aki_batched():
        outputs["aki"] = model.generate(**batch, **gen)

    def aki_loop():
        for row in rows:
            model.generate(**row, **gen)

    def bare():
        outputs["bare"] = llm.generate(inputs_embeds=embeds, attention_mask=batch["attention_mask"], **gen)

    variants = {"aki batched": aki_batched, "aki batch-1 loop": aki_loop, "bare LLM": bare}
    with torch.inference_mode():
        med = median_times(variants, args.repeats, sync=sync)
    n_tokens = args.batch * args.new
    L = batch["input_ids"].shape[1]
    print(f"aki generation benchmark: {args.family} hidden {args.hidden} x {args.layers} layers, vocab {args.vocab}, "
          f"rule {args.rule}, attn {args.attn}, device {args.device}, threads {torch.get_num_threads()}")
    print(f"batch {args.batch}, prompt {L} tokens ({args.image_tokens} image tokens), {args.new} new tokens, "
          f"medians of {args.repeats} interleaved repetitions")
    for name, t in med.items():
        print(f"  {name:18s} {t * 1e3:9.1f} ms   {n_tokens / t:8.1f} new tokens/s")
    print(f"ratio aki batched / bare LLM (throughput): {med['bare LLM'] / med['aki batched']:.3f}x  (target >= 0.95x)")
    print(f"ratio batched / batch-1 loop (throughput): {med['aki batch-1 loop'] / med['aki batched']:.2f}x")
    same = torch.equal(outputs["aki"][:, L:], outputs["bare"])
    print(f"aki tokens == bare LLM tokens: {same}" + ("" if args.rule == "causal" else
                                                     f" (rule {args.rule} reads the prompt differently)"))
    if args.rule == "causal" and not same:
        raise SystemExit("causal aki generation differs from the bare LLM on the same embeddings")


if __name__ == "__main__":
    main()
