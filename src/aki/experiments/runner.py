"""Run the paper's comparison end to end on synthetic data: data, tiny model, PT, SFT per mode,
evaluation, results table. Every finished piece is kept on disk, so a rerun resumes where it
stopped (a run counts as finished once its ``final/`` export or ``scores.json`` exists).

All modes of one seed fine-tune from the same pre-training checkpoint with the same data order and
step budget; only the attention rule (or input order) differs, as in the paper's Table 1.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aki.experiments.modes import Mode
from aki.experiments.tiny_vlm import TinyVLMSize, build_tiny_vlm


def _installed(folder: Path) -> str | None:
    """``folder`` as a string when a model is saved there (its ``config.json``), else None."""
    return str(folder) if (folder / "config.json").is_file() else None


def default_tower() -> str | None:
    """The tower shipped with aki (``aki.vision.PRETRAINED_TOWER``), if it is installed."""
    from aki.vision import PRETRAINED_TOWER

    return _installed(PRETRAINED_TOWER)


def default_language_model() -> str | None:
    """The decoder shipped with aki (``aki.language.PRETRAINED_LANGUAGE_MODEL``), if it is installed."""
    from aki.language import PRETRAINED_LANGUAGE_MODEL

    return _installed(PRETRAINED_LANGUAGE_MODEL)


@dataclass
class ExperimentSettings:
    """Budget of one experiment. Defaults: the quickstart (9.1 minutes measured on the 2-core machine
    with no other job running; docs/quickstart-lab.md)."""

    out: str = "runs/quickstart"
    data_dir: str | None = None
    # 12,000 train scenes take ~15 s to generate (worker processes) and give 78,000 SFT items,
    # more than the SFT steps draw, so no sample repeats; 300 test scenes: 1,071 CV-Bench items.
    n_train: int = 12000
    n_test: int = 300
    data_seed: int = 0
    size: TinyVLMSize = field(default_factory=lambda: TinyVLMSize(resampler_region_prior=2.0))
    # The project's pretrained tower (``aki pretrain-vision``), frozen in PT and SFT as AKI freezes
    # SigLIP. None: a random tower that learns in PT (and in SFT unless ``sft_freeze_vision``).
    vision_tower: str | None = field(default_factory=default_tower)
    # A decoder taught in words (``aki pretrain-llm``), as AKI starts from an instruction-tuned LLM;
    # trained in PT and SFT. Default: the one aki ships (``aki.language``); over three seeds it beats a
    # random decoder on Count, CV-Bench overall, POPE and Open QA and ties it elsewhere (lab item 42).
    # None: a random decoder built from ``size``.
    language_model: str | None = field(default_factory=default_language_model)
    pt_steps: int = 600
    sft_steps: int = 600
    batch_size: int = 32
    # Measured with a from-scratch tower: at pt_lr 2e-3 its features collapse (captions stop depending
    # on the image: caption loss with shuffled images equals the real one); 5e-4 keeps them alive.
    pt_lr: float = 5e-4
    sft_lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    pt_max_length: int = 96
    sft_max_length: int = 96
    sft_freeze_vision: bool = False
    # Share of caption samples mixed into instruction tuning (0 = question-answer pairs only).
    sft_caption_share: float = 0.0
    augment: bool = False
    eval_limit: int | None = 600
    eval_batch_size: int = 64
    # One compute thread (the DataLoader worker takes the other core): measured on the shared 2-core
    # machine under load, 2 threads made PT steps 0.6-7.8 s, 1 thread 0.33-0.8 s (docs/quickstart-lab.md).
    num_threads: int | None = 1
    progress: bool = True

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else Path(self.out) / "data"


def _say(msg: str) -> None:
    print(msg, flush=True)


def ensure_data(s: ExperimentSettings) -> Path:
    """Generate the synthetic scenes once (reused when ``metadata.json`` exists)."""
    from aki.data.synth import generate

    d = s.data_path
    if not (d / "metadata.json").exists():
        _say(f"generating {s.n_train} train / {s.n_test} test synthetic scenes in {d}")
        generate(d, n_train=s.n_train, n_test=s.n_test, seed=s.data_seed)
    return d


def _stage_config(s: ExperimentSettings, *, stage: str, init_dir: Path, out_dir: Path, order: str, rule: str,
                  seed: int, rule_options: dict | None = None):
    from aki.training.config import DataConfig, DataSource, ModelInit, TrainConfig

    d = s.data_path / "train"
    if stage == "pt":
        sources = [DataSource(format="pt_jsonl", path=str(d / "pt.jsonl"), name="synth-captions")]
    else:
        sources = [DataSource(format="sft_llava", path=str(d / "sft.jsonl"), name="synth-vqa")]
        if s.sft_caption_share > 0:
            share = s.sft_caption_share
            sources[0].weight = 1.0 - share
            sources.append(DataSource(format="pt_jsonl", path=str(d / "pt.jsonl"), name="synth-captions",
                                      weight=share))
    lr = s.pt_lr if stage == "pt" else s.sft_lr
    cfg = TrainConfig(
        output_dir=str(out_dir),
        stage=stage,
        max_steps=s.pt_steps if stage == "pt" else s.sft_steps,
        seed=seed,
        init=ModelInit(from_dir=str(init_dir)),
        # Flips and crops would contradict the spatial words of synthetic captions and answers.
        data=DataConfig(sources=sources, turns="split", augment=s.augment),
        lr=lr,
        min_lr=lr * s.min_lr_ratio,
        warmup_steps=s.warmup_steps,
        weight_decay=1e-2 if stage == "pt" else 1e-4,
        attention_rule=rule,
        rule_options=dict(rule_options or {}),
        order=order,
        batch_size=s.batch_size,
        max_length=s.pt_max_length if stage == "pt" else s.sft_max_length,
        # A pretrained tower is frozen in both stages, as in the paper; a from-scratch one learns in
        # PT, then is frozen in SFT only if ``sft_freeze_vision``.
        freeze_vision=s.vision_tower is not None or (stage == "sft" and s.sft_freeze_vision),
        log_every=max(1, min(25, (s.pt_steps if stage == "pt" else s.sft_steps) // 4)),
        save_every=10**9,
        keep_last_k=1,
        progress=s.progress,
        tensorboard=False,
        num_threads=s.num_threads,
    )
    return cfg.validate()


def _final(run_dir: Path) -> Path:
    return run_dir / "final"


def run_stage(cfg) -> dict[str, Any]:
    from aki.training import train

    if (_final(Path(cfg.output_dir)) / "config.json").exists():
        reuse_checked(Path(cfg.output_dir))
        _say(f"  reusing {cfg.output_dir} (finished)")
        return {"reused": True}
    return train(cfg, overwrite=True)


def reuse_checked(run_dir: Path) -> None:
    """A finished run is reused only when its ``final/`` loads (aki.pretrained.check_model_folder);
    a damaged one is named, with the fix: remove the run folder so the rerun redoes it."""
    from aki.pretrained import check_model_folder

    try:
        check_model_folder(_final(run_dir))
    except (OSError, ValueError) as err:
        raise RuntimeError(f"the finished run {str(run_dir)!r} cannot be reused: {err} Remove {str(run_dir)!r} and "
                           "run the same command again to redo it.") from None


def evaluate_run(s: ExperimentSettings, run_dir: Path, mode: Mode) -> dict[str, Any]:
    """Score a fine-tuned run on the synthetic test split (cached in ``run_dir/eval/scores.json``)."""
    from aki.eval.runner import evaluate
    from aki.model import AkiForConditionalGeneration
    from aki.processing import AkiProcessor

    scores_path = run_dir / "eval" / "scores.json"
    if scores_path.exists():
        return json.loads(scores_path.read_text())
    reuse_checked(run_dir)
    model = AkiForConditionalGeneration.from_pretrained(_final(run_dir)).eval()
    processor = AkiProcessor.from_pretrained(_final(run_dir))
    scores = evaluate(model, processor, s.data_path, batch_size=s.eval_batch_size, max_new_tokens=4,
                      limit=s.eval_limit, output_dir=run_dir / "eval", order=mode.eval_order)
    scores_path.write_text(json.dumps(scores, indent=2))
    return scores


_NOT_RESULT_SETTINGS = ("progress", "num_threads", "eval_batch_size")


def check_same_settings(s: ExperimentSettings) -> None:
    """Resuming reuses finished runs, so it is only valid with the settings that made them."""
    path = Path(s.out) / "settings.json"
    if not path.exists():
        return
    old, new = json.loads(path.read_text()), json.loads(json.dumps(asdict(s)))
    diff = sorted(k for k in set(old) | set(new)
                  if k not in _NOT_RESULT_SETTINGS and old.get(k) != new.get(k))
    if diff:
        raise ValueError(
            f"{s.out} holds runs made with other settings ({', '.join(diff)} differ), which a resume would "
            f"silently reuse. Use another --out, or delete {s.out} to start over."
        )


def run_experiment(s: ExperimentSettings, modes: list[Mode], seeds: list[int]) -> dict[str, Any]:
    """Run every (mode, seed); returns ``{mode: {seed: scores}}`` plus timing."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bars only
    if s.num_threads:
        torch.set_num_threads(s.num_threads)
    t0 = time.perf_counter()
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    check_same_settings(s)
    (out / "settings.json").write_text(json.dumps(asdict(s), indent=2))
    stages: dict[str, float] = {}  # seconds per stage (a reused stage counts its reuse)

    def timed(name: str, fn, *args):
        t = time.perf_counter()
        result = fn(*args)
        stages[name] = round(time.perf_counter() - t, 1)
        return result

    timed("data", ensure_data, s)
    pt_keys = sorted({(m.pt_key, m.pt_order, m.pt_rule) for m in modes})
    n_steps = len(seeds) * (len(pt_keys) + 2 * len(modes))
    k = 0
    results: dict[str, dict[int, Any]] = {m.name: {} for m in modes}
    for seed in seeds:
        root = out / f"seed{seed}"
        init_dir = root / "init"
        if not (init_dir / "config.json").exists():
            build_tiny_vlm(s.data_path, s.size, seed=seed, out_dir=init_dir, vision_tower=s.vision_tower,
                           language_model=s.language_model)
        for key, order, rule in pt_keys:
            k += 1
            _say(f"[{k}/{n_steps}] seed {seed}: pre-training ({order}, {rule}) -> {root / key}")
            timed(f"seed{seed}/{key}", run_stage, _stage_config(s, stage="pt", init_dir=init_dir,
                  out_dir=root / key, order=order, rule=rule, seed=seed))
        for m in modes:
            k += 1
            run_dir = root / m.name
            _say(f"[{k}/{n_steps}] seed {seed}: instruction tuning, mode {m.name} ({m.label}) -> {run_dir}")
            timed(f"seed{seed}/{m.name}", run_stage, _stage_config(
                s, stage="sft", init_dir=_final(root / m.pt_key), out_dir=run_dir, order=m.sft_order,
                rule=m.sft_rule, seed=seed, rule_options=m.sft_rule_options))
            k += 1
            _say(f"[{k}/{n_steps}] seed {seed}: evaluating {m.name}")
            results[m.name][seed] = timed(f"seed{seed}/{m.name}/eval", evaluate_run, s, run_dir, m)
    (out / "timings.json").write_text(json.dumps(stages, indent=2))
    return {"results": results, "reference": reference_scores(s), "seconds": time.perf_counter() - t0,
            "stage_seconds": stages}


REFERENCE_ROW = "image-blind constant answer (reference)"


def reference_scores(s: ExperimentSettings) -> dict[str, Any]:
    """The constant-answer row (most frequent training answer per task), on the same test rows."""
    from aki.experiments.baseline import constant_answer_scores

    return constant_answer_scores(s.data_path, s.eval_limit)
