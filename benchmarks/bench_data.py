"""How long the training loop waits for data, and how full packed rows are, on the tiny presets.

Runs, in one process one after the other on the same synthetic data, the tiny PT preset
(``configs/tiny-pretrain.yaml``) and the tiny SFT preset (``configs/tiny-sft.yaml``, from a tiny
random model instead of the PT output) for ``--steps`` steps each:

- with the data made in the training process (``data.num_workers=0``, what aki did before), and
  with DataLoader workers (``--workers``, default: the preset's automatic count);
- SFT also with ``data.packing=true``.

For each run it prints the share of the step time the loop waited for its data (over all steps,
and after the first ``--warmup`` steps, once the workers' queue is full), the mean step time and
the share of token slots holding real tokens (``non_pad_fraction``: the packing fill). Targets
(issue 14): data wait <= 10 % of a step, packing fill >= 0.95. Wall-clock numbers from a machine
shared with other work are noisy; the ratios within one run are what to compare.

Usage::

    python benchmarks/bench_data.py                 # 30 steps per run
    python benchmarks/bench_data.py --steps 60 --workers 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(preset: str, out: Path, synth: Path, steps: int, overrides: list[str]) -> list[dict]:
    from aki.training import load_config, train

    source = (f"[{{format: pt_shards, path: '{synth}/train/pt-*.tar', name: synth-captions}}]" if "pretrain" in preset
              else f"[{{format: sft_llava, path: '{synth}/train/sft.jsonl', name: synth-vqa}}]")
    cfg = load_config(ROOT / "configs" / preset, [
        f"output_dir={out}", f"max_steps={steps}", "log_every=1", f"save_every={10 * steps}", "progress=false",
        "tensorboard=false", "init={tiny: llama}", f"data.synth_dir={synth}", f"data.sources={source}", *overrides])
    train(cfg, overwrite=True)
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def summarise(rows: list[dict], warmup: int) -> dict[str, float]:
    def wait(rs):
        total = sum(r["step_time_s"] for r in rs)
        return sum(r["data_wait_fraction"] * r["step_time_s"] for r in rs) / total

    steady = rows[warmup:] or rows
    return {"wait_all": wait(rows), "wait_steady": wait(steady),
            "step_ms": 1000 * sum(r["step_time_s"] for r in steady) / len(steady),
            "fill": sum(r["non_pad_fraction"] for r in rows) / len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3, help="first steps left out of the steady-state wait")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: automatic)")
    ap.add_argument("--scenes", type=int, default=400, help="synthetic training scenes (the presets use 400)")
    args = ap.parse_args()

    from aki.data.synth import generate

    workers = [] if args.workers is None else [f"data.num_workers={args.workers}"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "synth", n_train=args.scenes, n_test=0, seed=0)
        cases = [
            ("tiny PT", "tiny-pretrain.yaml", "in-process", ["data.num_workers=0"]),
            ("tiny PT", "tiny-pretrain.yaml", "workers", workers),
            ("tiny SFT", "tiny-sft.yaml", "in-process", ["data.num_workers=0"]),
            ("tiny SFT", "tiny-sft.yaml", "workers", workers),
            ("tiny SFT packed", "tiny-sft.yaml", "in-process", ["data.num_workers=0", "data.packing=true"]),
            ("tiny SFT packed", "tiny-sft.yaml", "workers", [*workers, "data.packing=true"]),
        ]
        results = []
        for k, (name, preset, how, over) in enumerate(cases):
            rows = run(preset, tmp / f"run{k}", tmp / "synth", args.steps, over)
            results.append((name, how, summarise(rows, args.warmup)))

    print(f"\n{args.steps} steps per run; steady state = after the first {args.warmup} steps")
    print(f"{'run':<17} {'data made':<11} {'wait (all)':>10} {'wait (steady)':>13} {'step ms':>8} {'fill':>6}")
    for name, how, r in results:
        print(f"{name:<17} {how:<11} {r['wait_all']:>10.1%} {r['wait_steady']:>13.1%} {r['step_ms']:>8.1f} "
              f"{r['fill']:>6.3f}")
    by = {(n, h): r for n, h, r in results}
    for name in ("tiny PT", "tiny SFT", "tiny SFT packed"):
        a, b = by[(name, "in-process")], by[(name, "workers")]
        print(f"{name}: step time with workers / in-process = {b['step_ms'] / a['step_ms']:.2f}; "
              f"steady data wait {a['wait_steady']:.1%} -> {b['wait_steady']:.1%} (target <= 10 %)")
    print(f"packing fill: {by[('tiny SFT packed', 'workers')]['fill']:.3f} (target >= 0.95) vs "
          f"{by[('tiny SFT', 'workers')]['fill']:.3f} unpacked")


if __name__ == "__main__":
    main()
