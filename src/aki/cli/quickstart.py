"""``aki quickstart`` and ``aki reproduce``: the paper's comparison, end to end, offline on a CPU."""

from __future__ import annotations

from pathlib import Path

import typer


def _run(settings, mode_names: list[str], seeds: list[int]) -> str:
    from aki.experiments.modes import get_modes
    from aki.experiments.report import write_report
    from aki.experiments.runner import REFERENCE_ROW, check_same_settings, run_experiment

    try:
        modes = get_modes(mode_names)
        check_same_settings(settings)
    except ValueError as err:  # one line and exit status 2 (aki.cli.errors)
        raise typer.BadParameter(str(err)) from None
    out = run_experiment(settings, modes, seeds)
    rows = {**out["results"], REFERENCE_ROW: {0: out["reference"]}}
    md = write_report(rows, seeds, Path(settings.out), seconds=out["seconds"])
    typer.echo("\n" + md)
    typer.echo(f"\nresults: {settings.out}/results.md, results.json, results.png "
               f"({out['seconds'] / 60:.1f} min)")
    return md


def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), help="where data, runs and results go"),
    seeds: list[int] = typer.Option([0], "--seed", help="seed(s); each adds one PT + one SFT per mode"),
    fast: bool = typer.Option(False, help="a few steps on a few scenes: checks the pipeline, not the method"),
    pt_steps: int = typer.Option(None, help="override the pre-training steps"),
    sft_steps: int = typer.Option(None, help="override the instruction-tuning steps"),
    vision_tower: Path = typer.Option(None, "--vision-tower", help="a tower from `aki pretrain-vision` "
                                      "(default: the one shipped with aki), frozen in both stages"),
    scratch_tower: bool = typer.Option(False, "--scratch-tower", help="no pretrained tower: a random one "
                                       "that learns during pre-training"),
    language_model: Path = typer.Option(None, "--language-model", help="start from a decoder made by "
                                        "`aki pretrain-llm` (default: the one shipped with aki)"),
    shipped_language_model: bool = typer.Option(False, "--shipped-language-model", help="start from the "
                                                "decoder shipped with aki (the default; made by `aki pretrain-llm`)"),
    random_language_model: bool = typer.Option(False, "--random-language-model", help="start from a random "
                                               "decoder instead, as aki's quickstart did before it shipped one"),
) -> None:
    """Synthetic data -> tiny AKI with the pretrained, frozen vision tower -> causal pre-training
    -> instruction tuning with causal and with MMA from the same checkpoint -> evaluation -> a
    table like the paper's Table 1."""
    from aki.experiments.modes import QUICKSTART_MODES

    settings = quick_settings(out, fast, vision_tower, scratch_tower, language_model, shipped_language_model,
                              random_language_model)
    if pt_steps is not None:
        settings.pt_steps = pt_steps
    if sft_steps is not None:
        settings.sft_steps = sft_steps
    _run(settings, list(QUICKSTART_MODES), list(seeds))
    model_dir = out / f"seed{seeds[0]}" / "mma" / "final"
    image = sorted((settings.data_path / "test" / "images").glob("*.png"))[:1]
    example = image[0] if image else "PATH.png"
    typer.echo(f"\nChat with the MMA model:\n  .venv/bin/aki chat {model_dir} --image {example} "
               '"How many circles are there?"')
    write_pictures(out, seeds[0], settings.data_path)


def write_pictures(out: Path, seed: int, data_dir: Path) -> None:
    """The pictures of what MMA changes (aki.analysis.pictures), for one seed. A failure here is a
    visible warning with the reason and the command to retry: the results above stay valid."""
    from aki.cli.pictures import echo_pictures

    mma, causal = out / f"seed{seed}" / "mma" / "final", out / f"seed{seed}" / "causal" / "final"
    typer.echo("")
    try:
        from aki.analysis.pictures import write_mma_pictures

        echo_pictures(write_mma_pictures(mma, causal, data_dir, out))
    except Exception as err:  # the quickstart's results are written already; never lose them here
        typer.secho(f"aki quickstart: warning: the pictures were not written ({type(err).__name__}: {err}); the "
                    f"results above are complete. Retry with: aki pictures --mma {mma} --causal {causal} "
                    f"--data {data_dir} --out {out}", fg=typer.colors.YELLOW, err=True)


def quick_settings(out: Path, fast: bool, vision_tower: Path | None = None, scratch_tower: bool = False,
                   language_model: Path | None = None, shipped_language_model: bool = False,
                   random_language_model: bool = False):
    from aki.experiments.runner import ExperimentSettings, default_language_model

    s = ExperimentSettings(out=str(out))
    if vision_tower is not None and scratch_tower:
        typer.echo("aki: error: --vision-tower and --scratch-tower exclude each other; give one.", err=True)
        raise typer.Exit(2)
    if scratch_tower:
        s.vision_tower = None
    elif vision_tower is not None:
        s.vision_tower = str(vision_tower)
    elif s.vision_tower is None:
        typer.echo("aki: error: the vision tower shipped with aki is missing from this install; make one "
                   "with `aki pretrain-vision --out DIR` and pass --vision-tower DIR (or --scratch-tower).",
                   err=True)
        raise typer.Exit(2)
    given = [flag for flag, on in (("--language-model", language_model is not None),
                                   ("--shipped-language-model", shipped_language_model),
                                   ("--random-language-model", random_language_model)) if on]
    if len(given) > 1:
        typer.echo(f"aki: error: {' and '.join(given)} exclude each other; give one.", err=True)
        raise typer.Exit(2)
    if random_language_model:
        s.language_model = None
    elif language_model is not None:
        s.language_model = str(language_model)
    else:
        s.language_model = default_language_model()
        if s.language_model is None:
            typer.echo("aki: error: the decoder shipped with aki is missing from this install; make one with "
                       "`aki pretrain-llm --out DIR` and pass --language-model DIR (or --random-language-model).",
                       err=True)
            raise typer.Exit(2)
    if fast:
        s.n_train, s.n_test = 40, 8
        s.pt_steps = s.sft_steps = 3
        s.batch_size, s.warmup_steps, s.eval_limit = 8, 1, 8
        s.progress = False
    return s


def reproduce(
    out: Path = typer.Option(Path("runs/reproduce"), help="where data, runs and results go"),
    modes: str = typer.Option(None, "--modes", help="comma-separated modes, e.g. causal,mma "
                              "(default: all of Table 1 + the unlock curve)"),
    seeds: int = typer.Option(None, "--seeds", min=1, help="number of seeds: runs seeds 0..N-1 (default 3, "
                              "as the paper averages 3)"),
    mode: list[str] = typer.Option(None, "--mode", help="one mode; repeat it for more (same as --modes)"),
    seed: list[int] = typer.Option(None, "--seed", help="one seed value; repeat it for more (instead of --seeds)"),
    fast: bool = typer.Option(False, help="a few steps on a few scenes: checks the pipeline, not the method"),
    vision_tower: Path = typer.Option(None, "--vision-tower", help="a tower from `aki pretrain-vision` "
                                      "(default: the one shipped with aki), frozen in both stages"),
    scratch_tower: bool = typer.Option(False, "--scratch-tower", help="no pretrained tower: a random one "
                                       "that learns during pre-training"),
    language_model: Path = typer.Option(None, "--language-model", help="start from a decoder made by "
                                        "`aki pretrain-llm` (default: the one shipped with aki)"),
    shipped_language_model: bool = typer.Option(False, "--shipped-language-model", help="start from the "
                                                "decoder shipped with aki (the default; made by `aki pretrain-llm`)"),
    random_language_model: bool = typer.Option(False, "--random-language-model", help="start from a random "
                                               "decoder instead, as aki's quickstart did before it shipped one"),
) -> None:
    """Modes x seeds with mean ± standard deviation per rule and task, and a sentence saying whether
    MMA − causal exceeds the seed spread (aki.experiments.verdict); resumable (finished runs are
    reused). Example: ``aki reproduce --modes causal,mma --seeds 3``."""
    from aki.experiments.modes import REPRODUCE_MODES

    mode_names, seed_values = reproduce_choice(modes, seeds, mode, seed, REPRODUCE_MODES)
    settings = quick_settings(out, fast, vision_tower, scratch_tower, language_model, shipped_language_model,
                              random_language_model)
    _run(settings, mode_names, seed_values)


def reproduce_choice(modes: str | None, seeds: int | None, mode: list[str] | None, seed: list[int] | None,
                     default_modes: tuple[str, ...]) -> tuple[list[str], list[int]]:
    """The modes and seed values asked for: ``--modes a,b`` or repeated ``--mode``; ``--seeds N``
    (seeds 0..N-1) or repeated ``--seed``. Giving both forms of one is an error, not a merge."""
    if modes is not None and mode:
        raise typer.BadParameter("give the modes once: --modes a,b or repeated --mode, not both.")
    if seeds is not None and seed:
        raise typer.BadParameter("give the seeds once: --seeds N (seeds 0..N-1) or repeated --seed, not both.")
    names = [m.strip() for m in modes.split(",")] if modes is not None else list(mode or default_modes)
    if any(not m for m in names):
        raise typer.BadParameter(f"--modes {modes!r} has an empty name; write e.g. --modes causal,mma.")
    if len(set(names)) != len(names):
        raise typer.BadParameter(f"mode listed twice in {names}.")
    values = list(range(seeds)) if seeds is not None else list(seed or [0, 1, 2])
    if len(set(values)) != len(values):
        raise typer.BadParameter(f"seed listed twice in {values}.")
    return names, values


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart)
    app.command("reproduce")(reproduce)
