"""``aki pretrain-llm``: teach the tiny decoder of the offline experiments in words."""

from __future__ import annotations

from pathlib import Path

import typer


def pretrain_llm_command(
    out: Path = typer.Option(..., "--out", help="folder for the decoder (save_pretrained), probe.json, "
                             "pretrain.json; the run itself goes to OUT/work"),
    n_scenes: int = typer.Option(30000, "--scenes", min=2, help="scenes whose questions are told in words"),
    held_out: int = typer.Option(500, "--held-out-scenes", min=1, help="scenes kept out of training, for the probe"),
    data_seed: int = typer.Option(1, "--data-seed", help="scene seed (the quickstart's data uses 0)"),
    steps: int = typer.Option(3000, "--steps", min=1, help="optimizer steps"),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr", min=0.0),
    init_std: float = typer.Option(0.08, "--init-std", min=0.0, help="the decoder's initializer_range"),
    layers: int = typer.Option(4, "--layers", min=1, help="decoder layers (without --augment, 6 keep "
                               "the letter on unseen question wording where 4 do not; 1.4x the time per step)"),
    max_length: int = typer.Option(480, "--max-length", min=8, help="tokens per sample"),
    conversations: str = typer.Option("scene", "--conversations", help="question: one training row per "
                                      "question; scene: one multi-turn row per scene, questions shuffled "
                                      "(needs --max-length 480)"),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="with --conversations scene: a letter "
                                 "drill turn per scene and generic lead-ins before half the questions, so that "
                                 "unseen wordings still get the letter"),
    seed: int = typer.Option(0, "--seed", help="initialisation and batch order (same seed -> same decoder)"),
    score_items: int = typer.Option(1500, "--score-items", min=1, help="held-out questions scored"),
    save_every: int = typer.Option(500, "--save-every", min=1, help="checkpoint every N steps (for --resume)"),
    threads: int = typer.Option(1, "--threads", min=1, help="torch compute threads"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in OUT/work from its last checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a decoder already in --out"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train the tiny decoder on the synthetic questions with each scene described in words instead of
    shown, print its held-out accuracy per task beside the answer prior, and save it (a transformers
    causal LM and its tokenizer). Use the folder as the quickstart's decoder
    (`aki quickstart --language-model DIR`), as AKI starts from an instruction-tuned LLM."""
    from aki.language.pretrain import (
        LanguagePretrainConfig,
        check_resumable,
        pretrain_language_model,
    )

    if (out / "model.safetensors").exists() and not (overwrite or resume):
        typer.echo(f"aki pretrain-llm: error: {out} already holds a decoder (model.safetensors), and this run "
                   "would replace it; choose another --out, pass --resume to continue its run, or --overwrite.",
                   err=True)
        raise typer.Exit(2)
    if resume and overwrite:
        typer.echo("aki pretrain-llm: error: --resume and --overwrite exclude each other; give one.", err=True)
        raise typer.Exit(2)
    cfg = LanguagePretrainConfig(
        out=str(out), n_scenes=n_scenes, held_out_scenes=held_out, data_seed=data_seed, steps=steps,
        batch_size=batch_size, lr=lr, init_std=init_std, layers=layers, max_length=max_length, conversations=conversations, augment=augment,
        seed=seed, score_items=score_items, save_every=save_every, num_threads=threads, progress=progress,
    )
    try:
        cfg.validate()
        if resume:
            check_resumable(cfg)
    except ValueError as err:
        typer.echo(f"aki pretrain-llm: error: {err}", err=True)
        raise typer.Exit(2) from err
    summary = pretrain_language_model(cfg, say=typer.echo, resume=resume)
    typer.echo(f"decoder ({summary['parameters'] / 1e6:.2f} M parameters), probe.json and pretrain.json in {out}")


def register(app: typer.Typer) -> None:
    app.command("pretrain-llm")(pretrain_llm_command)
