"""Lab experiment (docs/quickstart-lab.md, items 36-38): can the quickstart's decoder, trained from
scratch, learn the instruction-tuning questions when the scene is *told* in words instead of shown?

Each question's ``<image>`` is replaced by that scene's caption (every object with its size, colour,
shape and coarse position, plus the occlusion facts), so the answer is in the prompt as text and no
perception is needed. The tiny VLM of the quickstart (same tokenizer, same decoder) is then trained
by the quickstart's own SFT stage on these text-only conversations, and scored teacher-forced (the
whole answer right) per task and format on questions about the last ``--held-out`` training scenes,
which training never sees. The text data and the scoring are :mod:`aki.language`'s (``aki
pretrain-llm`` is the same stage made into a command that exports the decoder). If the decoder stays at its answer priors here, no change to the tower or
the resampler can make the quickstart see within the same budget.

    .venv/bin/python scripts/lab_scene_as_text.py --data runs/quickstart/data --out /tmp/scene-as-text --steps 600
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="an `aki data synth` folder (e.g. the quickstart's)")
    p.add_argument("--out", type=Path, required=True, help="folder for the text data, the run and results.json")
    p.add_argument("--steps", type=int, default=600, help="SFT steps (the quickstart's budget: 600)")
    p.add_argument("--init-std", type=float, default=0.02, help="the decoder's initializer_range (TinyVLMSize.llm_init_std)")
    p.add_argument("--loss-on", choices=["answer", "all"], default="answer",
                   help="train on the answers (the quickstart), or on every text token as a language model is")
    p.add_argument("--held-out", type=int, default=1000, help="training scenes held out for scoring (the last ones)")
    p.add_argument("--score-items", type=int, default=1500, help="held-out questions scored")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=192, help="tokens per sample (captions are long)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps (for --resume)")
    p.add_argument("--resume", action="store_true", help="continue the text run in --out from its last checkpoint")
    p.add_argument("--transfer", default=None, metavar="MODES",
                   help="then, from the text-trained model, run the quickstart's pre-training and instruction tuning "
                        "on the images of --data for these modes (e.g. causal,mma) and score them on its test split")
    p.add_argument("--transfer-steps", type=int, nargs=2, default=None, metavar=("PT", "SFT"),
                   help="steps of the two --transfer stages (default: the quickstart's)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    from aki.experiments.runner import ExperimentSettings, _stage_config, run_stage
    from aki.experiments.tiny_vlm import build_tiny_vlm
    from aki.language.probe import text_accuracy
    from aki.language.scene_text import write_text_data
    from aki.vision import PRETRAINED_TOWER

    args = parse_args(argv)
    text_data = args.out / "data"
    try:
        n_train, n_held = write_text_data(args.data, text_data, args.held_out)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    print(f"{n_train} training and {n_held} held-out questions with the scene as text", flush=True)
    settings = ExperimentSettings(out=str(args.out), data_dir=str(text_data), progress=False,
                                  sft_steps=args.steps, batch_size=args.batch_size, sft_max_length=args.max_length)
    settings.size.llm_init_std = args.init_std
    # The tokenizer is trained on the original data's texts: the quickstart's own tokenizer.
    build_tiny_vlm(args.data, settings.size, seed=args.seed, out_dir=args.out / "init", vision_tower=PRETRAINED_TOWER)
    cfg = _stage_config(settings, stage="sft", init_dir=args.out / "init", out_dir=args.out / "run", order="I&T",
                        rule="causal", seed=args.seed)
    cfg.loss_on = args.loss_on
    if args.save_every:
        cfg.save_every, cfg.keep_last_k = args.save_every, 2
    if args.resume:
        from aki.training import train

        train(cfg, resume=True)
    else:
        run_stage(cfg)
    scores = text_accuracy(args.out / "run" / "final", text_data / "heldout.jsonl", args.score_items, args.max_length)
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "teacher_forced_accuracy": scores}
    for key, value in scores.items():
        print(f"{key}: {value:.1f} %")
    if args.transfer:
        results["transfer"] = transfer(args, args.transfer.split(","))
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    return scores


def transfer(args: argparse.Namespace, modes: list[str]) -> dict[str, dict]:
    """The quickstart's two stages (captioning pre-training, then instruction tuning per mode, with
    its default budget) on the images of ``args.data``, starting from the text-trained model, scored
    on the test split with the official scorers. The resampler is still at its initial weights."""
    from aki.experiments.modes import get_modes
    from aki.experiments.runner import ExperimentSettings, _stage_config, evaluate_run, run_stage

    settings = ExperimentSettings(out=str(args.out / "vlm"), data_dir=str(args.data), progress=False)
    if args.transfer_steps:
        settings.pt_steps, settings.sft_steps = args.transfer_steps
    pt_dir = args.out / "vlm" / "pt"
    run_stage(_stage_config(settings, stage="pt", init_dir=args.out / "run" / "final", out_dir=pt_dir,
                            order="I&T", rule="causal", seed=args.seed))
    out = {}
    for mode in get_modes(modes):
        run_dir = args.out / "vlm" / mode.name
        run_stage(_stage_config(settings, stage="sft", init_dir=pt_dir / "final", out_dir=run_dir,
                                order=mode.sft_order, rule=mode.sft_rule, seed=args.seed,
                                rule_options=mode.sft_rule_options))
        sc = evaluate_run(settings, run_dir, mode)
        out[mode.name] = {
            "cvbench": {k: round(v, 1) for k, v in sc["cvbench"]["per_task"].items()},
            "pope_f1": {k: round(v["f1"], 1) for k, v in sc["pope"].items() if isinstance(v, dict) and "f1" in v},
            "attributes": {k: round(v, 1) for k, v in sc["attributes"]["per_task"].items()
                           if isinstance(v, (int, float))},
        }
        print(f"{mode.name} after the quickstart's PT and SFT: {json.dumps(out[mode.name])}", flush=True)
    return out


if __name__ == "__main__":
    main()
