"""Time and peak memory of building each attention rule's mask, against a plain causal mask.

Realistic layouts: system text, then turns of [144 image tokens, a question, an answer] repeated
until the row is full (right padding for the rest; the rows of a batch differ a little). For each
length the script measures, in the same run (median time of repetitions after a warm-up, and the
extra peak resident memory of one build, read from ``/proc/self/status`` after resetting it):

- the baseline ``torch.ones(L, L, dtype=bool).tril()`` expanded to ``[B, 1, L, L]`` and
  materialised (B*L*L bytes: what any dense mask costs at least);
- the model's mask for every rule (``aki.model.masking.prompt_attention_mask``: the rule's mask
  functions through transformers' sdpa mask interface, ``use_vmap=False``, in row chunks), for
  sdpa (bool) and eager (additive float32);
- for MMA, the two other ways transformers offers: ``create_causal_mask(or_mask_function=...)``
  (it evaluates custom functions under ``torch.vmap``) and the interface in one piece;
- ``build_attention_mask`` (the public reference rendering, with the PAD diagonal) per rule;
- ``find_leaks`` on the MMA mask with the answers trained, and a ``BlockMask`` per rule.

Usage::

    python benchmarks/bench_masks.py                      # L in 512, 2048
    python benchmarks/bench_masks.py --lengths 512 2048 8192 --repeats 3
    python benchmarks/bench_masks.py --rules mma cca --no-block --no-leaks
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import re
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from transformers import LlamaConfig
from transformers.masking_utils import causal_mask_function, create_causal_mask

from aki.masks import (
    RULE_NAMES,
    Segment,
    build_attention_mask,
    build_block_mask,
    find_leaks,
    get_rule,
    render_mask,
    token_layout,
)
from aki.model.masking import decoder_mask_function, prompt_attention_mask

SYSTEM, IMAGE_TOKENS = 24, 144


def realistic_segments(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """``[batch, length]`` segments: system text, turns of image / question / answer, right PAD."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(batch):
        row = [Segment.TEXT] * SYSTEM
        while True:
            question = int(torch.randint(8, 40, (), generator=g))
            answer = int(torch.randint(16, 96, (), generator=g))
            turn = (
                [Segment.TEXT] * 3  # user marker
                + [Segment.IMAGE] * IMAGE_TOKENS
                + [Segment.QUERY] * question  # question and assistant marker
                + [Segment.ANSWER] * answer
                + [Segment.TEXT]  # end of turn
            )
            if len(row) + len(turn) > length:
                break
            row += turn
        rows.append([int(s) for s in row] + [int(Segment.PAD)] * (length - len(row)))
    return torch.tensor(rows)


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
        del out
    return statistics.median(times)


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:9.2f} ms" if seconds < 10 else f"{seconds:9.2f} s "


def _status(field: str) -> int:
    """A memory field of /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        text = f.read()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024


_LIBC = ctypes.CDLL("libc.so.6")
_LIBC.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD fixed at 64 KiB: big blocks are mapped and returned on free


def peak_extra(fn: Callable[[], object]) -> float:
    """Extra peak resident memory (MiB) while ``fn`` runs (its result included), Linux/glibc only."""
    gc.collect()
    _LIBC.malloc_trim(0)
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak (VmHWM) to the current RSS
        f.write("5")
    out = fn()
    peak = _status("VmHWM")
    del out
    return (peak - before) / 2**20


def _options(spec: str) -> tuple[str, dict]:
    rule, _, frac = spec.partition("@")
    return rule, ({"unlock_fraction": float(frac)} if frac else {})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rules", nargs="+", default=[*RULE_NAMES, "mma@0.5"],
                        help="rule names; 'mma@F' is mma with unlock_fraction F")
    parser.add_argument("--no-leaks", action="store_true", help="skip timing find_leaks")
    parser.add_argument("--no-block", action="store_true", help="skip timing BlockMask creation")
    parser.add_argument("--no-reference", action="store_true", help="skip build_attention_mask")
    parser.add_argument("--block-max-length", type=int, default=2048,
                        help="time BlockMask creation only up to this length")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    B = args.batch
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, B={B}, "
          f"median of {args.repeats} (after 1 warm-up); peak = extra resident memory of one build\n")
    header = (f"| {'what':<40} | {'L':>5} | {'median':>12} | {'x tril dense':>12} | {'peak MiB':>9} "
              f"| {'x mask size':>11} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")

    def row(what: str, L: int, fn: Callable[[], object], repeats: int, base: float | None = None) -> float:
        t = median_time(fn, repeats)
        peak = peak_extra(fn)
        size = B * L * L / 2**20  # one bool [B, 1, L, L]
        ratio = t / base if base else 1.0
        print(f"| {what:<40} | {L:>5} | {fmt(t):>12} | {ratio:>12.2f} | {peak:>9.0f} | {peak / size:>11.2f} |",
              flush=True)
        return t

    text_config = LlamaConfig(num_hidden_layers=1)

    def model_mask(rule: str, options: dict, impl: str, layout, L: int):
        text_config._attn_implementation = impl
        return prompt_attention_mask(text_config, get_rule(rule), options, layout, L)

    def via_create_causal_mask(embeds, padding, or_mask):
        text_config._attn_implementation = "sdpa"
        return create_causal_mask(text_config, embeds, padding, None, or_mask_function=or_mask)

    for L in args.lengths:
        seg = realistic_segments(B, L)
        layout = token_layout(seg, tokens_per_image=IMAGE_TOKENS, validate=False)
        base = row("causal tril (materialised)", L,
                   partial(lambda n: torch.ones(n, n, dtype=torch.bool).tril().expand(B, 1, n, n).contiguous(), L),
                   args.repeats)
        for spec in args.rules:
            rule, options = _options(spec)
            for impl in ("sdpa", "eager"):
                row(f"model mask {spec} ({impl})", L, partial(model_mask, rule, options, impl, layout, L),
                    args.repeats, base)
        mma_fn, padding = decoder_mask_function(get_rule("mma"), {}, layout), layout.valid
        or_mask, _ = get_rule("mma").mask_functions(layout)
        row("mma via create_causal_mask (vmap)", L,
            partial(via_create_causal_mask, torch.empty(B, L, 0), padding, or_mask), args.repeats, base)
        row("mma via sdpa interface, one piece", L,
            partial(render_mask, mma_fn, B, L, padding_mask=padding, chunk_elements=B * L * L), args.repeats, base)
        row("mma via sdpa interface, row chunks", L,
            partial(render_mask, mma_fn, B, L, padding_mask=padding), args.repeats, base)
        row("plain causal via sdpa interface", L,
            partial(render_mask, causal_mask_function, B, L, padding_mask=padding), args.repeats, base)
        if not args.no_reference:
            for spec in args.rules:
                rule, options = _options(spec)
                row(f"build_attention_mask {spec}", L, partial(build_attention_mask, seg, rule, **options),
                    args.repeats, base)
        if not args.no_leaks:
            mask = build_attention_mask(seg, "mma")
            predicts = torch.nn.functional.pad(seg[:, 1:] == Segment.ANSWER, (0, 1), value=False)
            assert not find_leaks(mask, predicts).any()
            row("find_leaks (mma mask)", L, partial(find_leaks, mask, predicts), max(1, args.repeats // 2), base)
            del mask
        if not args.no_block and args.block_max_length >= L:
            for spec in args.rules:
                rule, options = _options(spec)
                row(f"BlockMask {spec}", L, partial(build_block_mask, seg, rule, **options),
                    max(1, args.repeats // 2), base)
        gc.collect()


if __name__ == "__main__":
    main()
