"""Time building each attention rule's mask against a plain causal mask.

Realistic layouts: system text, then turns of [144 image tokens, a question, an answer] repeated
until the row is full (right padding for the rest; the rows of a batch differ a little). For each
length the script times, in the same run:

- the baseline ``torch.ones(L, L, dtype=bool).tril()`` expanded to ``[B, 1, L, L]`` (a view: it
  allocates L*L only), and the same baseline materialised (``.contiguous()``, B*L*L, what a rule's
  dense mask costs at least);
- ``build_attention_mask`` for every rule (and ``mma`` with ``unlock_fraction=0.5``);
- ``find_leaks`` on the MMA mask with the answers trained, and ``build_block_mask`` per rule.

Usage::

    python benchmarks/bench_masks.py                      # L in 512, 2048
    python benchmarks/bench_masks.py --lengths 512 2048 8192 --repeats 3
    python benchmarks/bench_masks.py --rules mma cca --no-block --no-leaks
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from aki.masks import RULE_NAMES, Segment, build_attention_mask, build_block_mask, find_leaks

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rules", nargs="+", default=[*RULE_NAMES, "mma@0.5"],
                        help="rule names; 'mma@F' is mma with unlock_fraction F")
    parser.add_argument("--no-leaks", action="store_true", help="skip timing find_leaks")
    parser.add_argument("--no-block", action="store_true", help="skip timing BlockMask creation")
    parser.add_argument("--block-max-length", type=int, default=2048,
                        help="time BlockMask creation only up to this length")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    B = args.batch
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, B={B}, "
          f"median of {args.repeats} (after 1 warm-up)\n")
    header = f"| {'what':<26} | {'L':>5} | {'median':>12} | {'x tril view':>11} | {'x tril dense':>12} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")

    def row(what: str, L: int, t: float, base_view: float, base_dense: float) -> None:
        print(f"| {what:<26} | {L:>5} | {fmt(t):>12} | {t / base_view:>11.1f} | {t / base_dense:>12.2f} |",
              flush=True)

    for L in args.lengths:
        seg = realistic_segments(B, L)
        base_view = median_time(lambda L=L: torch.ones(L, L, dtype=torch.bool).tril().expand(B, 1, L, L),
                                args.repeats)
        base_dense = median_time(
            lambda L=L: torch.ones(L, L, dtype=torch.bool).tril().expand(B, 1, L, L).contiguous(), args.repeats)
        row("causal tril (view)", L, base_view, base_view, base_dense)
        row("causal tril (materialised)", L, base_dense, base_view, base_dense)
        for spec in args.rules:
            rule, _, frac = spec.partition("@")
            options = {"unlock_fraction": float(frac)} if frac else {}
            t = median_time(partial(build_attention_mask, seg, rule, **options),
                            args.repeats)
            row(f"dense {spec}", L, t, base_view, base_dense)
        if not args.no_leaks:
            mask = build_attention_mask(seg, "mma")
            predicts = torch.nn.functional.pad(seg[:, 1:] == Segment.ANSWER, (0, 1), value=False)
            t = median_time(partial(find_leaks, mask, predicts),
                            max(1, args.repeats // 2))
            assert not find_leaks(mask, predicts).any()
            row("find_leaks (mma mask)", L, t, base_view, base_dense)
            del mask
        if not args.no_block and args.block_max_length >= L:
            for spec in args.rules:
                rule, _, frac = spec.partition("@")
                options = {"unlock_fraction": float(frac)} if frac else {}
                t = median_time(partial(build_block_mask, seg, rule, **options),
                                max(1, args.repeats // 2))
                row(f"BlockMask {spec}", L, t, base_view, base_dense)
        gc.collect()


if __name__ == "__main__":
    main()
