"""``aki eval``: a saved model on the paper's benchmarks (or the synthetic split), official scoring."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def _fail(message: str, debug: bool, err: BaseException | None = None) -> None:
    if debug and err is not None:
        raise err
    typer.echo(f"aki eval: error: {message}", err=True)
    raise typer.Exit(2)


def eval_cmd(
    model_dir: Path = typer.Argument(..., help="directory saved by save_pretrained (model + processor)"),
    bench: str = typer.Option(
        None, "--bench",
        help="benchmarks, comma separated: mme, mmbench, seed, llava-w, mmmu, mathvista, pope, mmvet, "
             "realworldqa, cvbench, or synth (the `aki data synth` test split); NAME=PATH names a file",
    ),
    data_root: Path = typer.Option(None, "--data-root", "--data", help="folder holding the benchmark files"),
    out: Path = typer.Option(None, "--out", help="predictions, scores.json and table1.*; default MODEL_DIR/eval"),
    image_root: Path = typer.Option(None, "--image-root", help="folder of images that rows name by file (COCO val2014 for POPE, CV-Bench's img/)"),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", min=1, help="default: per benchmark"),
    limit: int = typer.Option(None, "--limit", min=1, help="first N rows of each benchmark (smoke runs)"),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda"),
    dtype: str = typer.Option(None, "--dtype", help="float32 / bfloat16 / float16 (default: as saved)"),
    judge_model: str = typer.Option(None, "--judge-model", help="judge model name (env AKI_JUDGE_MODEL)"),
    judge_base_url: str = typer.Option(None, "--judge-base-url", help="OpenAI-compatible URL (env AKI_JUDGE_BASE_URL)"),
    judge_api_key: str = typer.Option(None, "--judge-api-key", help="judge API key (env AKI_JUDGE_API_KEY / OPENAI_API_KEY)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars with ETA"),
    debug: bool = typer.Option(False, "--debug", help="show tracebacks"),
) -> None:
    """Evaluate MODEL_DIR greedily and batched; writes predictions as they come (reruns resume),
    scores.json, and the paper's Table 1 (table1.md / .json / .png)."""
    debug = debug or os.environ.get("AKI_DEBUG") == "1"
    from aki.eval.benchmarks import SYNTH, get_benchmark
    from aki.eval.judge import JudgeConfig
    from aki.eval.report import summary_lines, write_table1
    from aki.eval.suite import parse_bench_list, run_suite

    if not bench:
        _fail("nothing to evaluate, no benchmark named, pass --bench (e.g. --bench mme,pope or --bench synth)", debug)
    benches = parse_bench_list(bench)
    for name, _ in benches:
        if name.lower() != SYNTH:
            try:
                get_benchmark(name)
            except KeyError as err:
                _fail(f"{err.args[0]}, the name is not a benchmark aki knows, fix --bench", debug)
    names = [n.lower() for n, _ in benches]
    if SYNTH in names and ({"cvbench", "pope"} & set(names)):
        _fail("--bench synth cannot be combined with cvbench or pope, their scores would share keys, run them separately", debug)
    if data_root is None and any(p is None for _, p in benches):
        _fail("no --data-root, the benchmarks' files must be found somewhere, pass --data-root DIR or NAME=PATH in --bench", debug)
    if data_root is not None and not data_root.exists():
        _fail(f"--data-root {data_root} does not exist, check the path", debug)
    if image_root is not None and not image_root.is_dir():
        _fail(f"--image-root {image_root} is not a folder, point it at the folder holding the images", debug)
    judge = JudgeConfig.from_options(judge_model, judge_base_url, judge_api_key)

    from aki.model.loading import load_pretrained

    try:
        model, processor = load_pretrained(model_dir, device=device, dtype=dtype, key="MODEL_DIR")
    except (OSError, ValueError, RuntimeError) as err:
        _fail(str(err), debug, err)
    out_dir = out if out is not None else model_dir / "eval"

    def show(result) -> None:
        for line in summary_lines(result):
            typer.echo(line)

    results = run_suite(model, processor, benches, data_root, out_dir, image_root=image_root, limit=limit,
                        batch_size=batch_size, max_new_tokens=max_new_tokens, judge=judge, progress=progress,
                        on_result=show)
    scored = {k: r for k, r in results.items() if r.status == "scored"}
    if scored:
        import json

        all_scores = json.loads((out_dir / "scores.json").read_text())
        write_table1(all_scores, out_dir, model_dir.name)
        typer.echo((out_dir / "table1.md").read_text().rstrip())
        typer.echo(f"predictions, scores.json and table1.md/.json/.png in {out_dir}")
    failed = [r for r in results.values() if r.status == "failed"]
    if not scored:
        reasons = "; ".join(f"{r.name}: {r.message}" for r in results.values())
        typer.echo(f"aki eval: error: nothing was evaluated, {reasons}", err=True)
        raise typer.Exit(1)
    if failed:
        typer.echo(f"aki eval: error: {len(failed)} benchmark(s) failed ({', '.join(r.name for r in failed)}), "
                   "see the lines above; the other scores are written", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
