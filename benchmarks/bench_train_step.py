"""Training-step time of every attention rule against the LLM's native causal path.

One random AKI model (SigLIP tower + resampler + an LLM of the chosen family and size), one SFT-like
batch (right padded rows of: a system prompt, one 144-token image, a question, a trained answer
of about a tenth of the row), forward + backward, timed side by side in one run as medians of
interleaved repetitions:

- ``native causal``: the bare LLM (``model.language_model``) on the batch's embeddings (images
  spliced in beforehand, untimed) with no attention mask (SDPA ``is_causal``) and its own loss
  (full logits, fp32 cross-entropy at every position): what a text-only causal LM step costs;
- ``native causal, trained-position loss``: the same decoder call, then aki's loss (head and
  cross-entropy at the trained positions only): the reference for what a rule's mask costs;
- ``aki <rule>``: ``model(**batch, labels=...)`` with the rule's mask, image encoding included,
  the head and loss at the trained positions only (the model's loss);
- ``aki causal, all-position loss``: the causal rule with logits at every position and the
  cross-entropy computed from them (what the trainer did before).

Printed: milliseconds per step and the ratios to both native references.

Usage::

    python benchmarks/bench_train_step.py                                # L ~ 251, batch 4
    python benchmarks/bench_train_step.py --length 1024 --batch 2 --repeats 5
    python benchmarks/bench_train_step.py --family phi3 --vocab 32064 --rules causal mma
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torch.nn.functional as F

from aki.masks import RULE_NAMES, Segment
from aki.model.loss import next_token_loss
from aki.model.presets import sized_text_config, tiny_config
from aki.testing import build_seeded, make_batch
from timing import median_times

IMAGE_TOKENS = 144


def build(args, rule: str):
    text = sized_text_config(args.family, args.vocab, args.hidden, args.layers, max_positions=8192)
    cfg = tiny_config(args.family, rule, vocab_size=args.vocab, text_config=text,
                      resampler_config={"num_latents": IMAGE_TOKENS, "depth": 2})
    return build_seeded(cfg, 0, args.attn).train()


def _tokens(layout: str) -> int:
    letters = layout.replace(" ", "")
    return len(letters) + letters.count("I") * (IMAGE_TOKENS - 1)


def batch_for(config, args):
    """Rows of ``args.length`` tokens at most: system, (image, question, answer) turns, right padded."""
    layouts = []
    for b in range(args.batch):
        row, turn = "T" * 12, 0
        budget = args.length - (b % 3) * 9  # rows differ a little: some right padding
        while True:
            question = 16 + 4 * ((b + turn) % 3)
            answer = max(4, (IMAGE_TOKENS + question) // 9)  # ~10 % of the tokens are trained
            part = " I " + "Q" * question + "A" * answer
            if _tokens(row + part) > budget:
                break
            row, turn = row + part, turn + 1
        layouts.append(row)
    batch = make_batch(config, layouts, seed=1, padding="right")
    batch["labels"] = torch.where(batch["segments"] == Segment.ANSWER, batch["input_ids"], -100)
    return batch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="llama", choices=["llama", "phi3", "qwen2", "qwen3"])
    parser.add_argument("--attn", default="sdpa")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=32064)
    parser.add_argument("--length", type=int, default=251)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rules", nargs="+", default=list(RULE_NAMES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)

    base = build(args, "causal")
    batch = batch_for(base.config, args)
    labels = batch["labels"]
    with torch.no_grad():
        embeds = base.embed(batch["input_ids"], batch["pixel_values"])
    models = {rule: build(args, rule) for rule in args.rules}
    for m in models.values():
        m.load_state_dict(base.state_dict())

    def native():  # transformers shifts the labels inside its loss
        base.language_model(inputs_embeds=embeds, labels=labels).loss.backward()

    def native_trained():
        hidden = base.language_model.model(inputs_embeds=embeds).last_hidden_state
        next_token_loss(hidden, labels, base.language_model.lm_head).backward()

    def aki(rule):
        def step():
            models[rule](**batch).loss.backward()
        return step

    def aki_all_positions():
        logits = base(**{k: v for k, v in batch.items() if k != "labels"}).logits
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                               ignore_index=-100)
        loss.backward()

    variants = {"native causal (LLM, no mask)": native, "native causal, trained-position loss": native_trained}
    for rule in args.rules:
        variants[f"aki {rule}"] = aki(rule)
    variants["aki causal, all-position loss"] = aki_all_positions

    def zero_grads():
        for m in [base, *models.values()]:
            m.zero_grad(set_to_none=True)

    med = median_times(variants, args.repeats, before_each=zero_grads)
    B, L = batch["input_ids"].shape
    trained = int((labels[:, 1:] != -100).sum())
    real = int(batch["attention_mask"].sum())
    print(f"aki training-step benchmark: {args.family} hidden {args.hidden} x {args.layers} layers, "
          f"vocab {args.vocab}, attn {args.attn}, threads {torch.get_num_threads()}")
    print(f"batch {B} x {L} tokens ({real} real, {trained} trained = {100 * trained / real:.1f} %), "
          f"forward + backward, medians of {args.repeats} interleaved repetitions")
    ref = med["native causal (LLM, no mask)"]
    ref_trained = med["native causal, trained-position loss"]
    print(f"  {'':38s} {'ms':>9s}   {'/ native':>9s}   {'/ native, trained-position loss':>32s}")
    for name, t in med.items():
        print(f"  {name:38s} {t * 1e3:9.1f}   {t / ref:8.2f}x   {t / ref_trained:31.2f}x")


if __name__ == "__main__":
    main()
