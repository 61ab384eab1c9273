"""Teach the tiny decoder in words: the synthetic questions with each scene described in text.

The quickstart's decoder, trained from scratch, needs thousands of steps before it answers questions
about a scene even when the scene is written into its prompt (docs/quickstart-lab.md, items 36-38),
and a decoder that has learned that in words learns to answer from the image within the
quickstart's budget (item 39). The paper starts from such a decoder (Phi-3.5-mini-instruct).

``aki pretrain-llm`` makes one: scenes from their own seed (the quickstart's data uses seed 0, this
stage seed 1, so they are other scenes), their questions with ``<image>`` replaced by the scene's
caption, and the quickstart's own instruction-tuning stage (same trainer, loss on the answers) run
on those text-only conversations from a fresh tiny AKI model. Text-only batches never reach the
vision tower or the resampler, so this trains the language model alone; only the language model is
exported: a transformers ``LlamaForCausalLM`` and its tokenizer, saved with ``save_pretrained``,
that :func:`aki.experiments.tiny_vlm.build_tiny_vlm` builds a VLM around. The folder also keeps
``probe.json`` (held-out accuracy per task and format, beside the answer prior) and
``pretrain.json`` (settings, command, seed, losses, seconds); the run itself, resumable, is in
``work/``.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aki.language.scene_text import CONVERSATIONS, TEST_WORDING_FILE

WORK = "work"
# Tokens the test-wording probe allows per question: its prompts are longer than the training ones
# (at most ~200 tokens in 500 held-out scenes), and a probe must not cut a question.
_TEST_WORDING_MAX_LENGTH = 320
# Settings added after runs were saved, with the value every run had before: a run saved without
# one of them used that value (the only choice there was).
_BEFORE_IT_EXISTED = {"layers": 4, "conversations": "question", "augment": False}
# Settings a resumed run may change: they do not change what is trained.
_FREE_ON_RESUME = ("out", "num_threads", "progress", "score_items")


@dataclass
class LanguagePretrainConfig:
    """Data, decoder initialisation and schedule. The defaults made the shipped decoder (37 minutes
    of training on one core, beside another job)."""

    out: str = "runs/language"
    n_scenes: int = 30000
    held_out_scenes: int = 500
    data_seed: int = 1
    steps: int = 3000
    batch_size: int = 16
    lr: float = 1e-3
    # The decoder's initializer_range: 0.08 learns these lookups sooner than transformers' 0.02
    # (docs/quickstart-lab.md, items 22 and 37-38).
    init_std: float = 0.08
    # Decoder layers (128 wide, as the quickstart's). Measured without ``augment``: 6 layers keep the
    # letter on the test split's unseen wording where 4 answer in words (lab item 42), for 1.4x the
    # time per step; with ``augment``, 4 layers keep it too.
    layers: int = 4
    # Tokens per sample: the caption in the prompt makes these longer than the quickstart's 96
    # (a whole scene's conversation, ``conversations="scene"``, needs about 480).
    max_length: int = 480
    # ``question``: one training row per question; ``scene``: one multi-turn row per scene, the
    # caption read once for all its questions, shuffled (aki.language.scene_text.write_text_data).
    # Measured: "scene" at batch 16 for 3,000 steps reached the probe of 20,000 steps of "question"
    # at batch 32 (the first shipped decoder's recipe) in 27 % of its time (lab item 41).
    conversations: str = "scene"
    # With scene conversations: one letter drill turn per scene and generic lead-ins before half of
    # the questions (aki.language.scene_text), so that unseen wordings still get the letter (lab item 42).
    augment: bool = True
    seed: int = 0
    score_items: int = 1500
    save_every: int = 500
    num_threads: int | None = 1
    progress: bool = True

    def validate(self) -> LanguagePretrainConfig:
        problems = [f"{name} must be >= 1" for name in ("n_scenes", "held_out_scenes", "steps", "batch_size",
                                                       "layers", "max_length", "score_items", "save_every")
                    if getattr(self, name) < 1]
        if self.held_out_scenes >= self.n_scenes:
            problems.append(f"held_out_scenes ({self.held_out_scenes}) must be fewer than n_scenes ({self.n_scenes})")
        if self.conversations not in CONVERSATIONS:
            problems.append(f"conversations must be one of {CONVERSATIONS}, not {self.conversations!r}")
        if self.augment and self.conversations != "scene":
            problems.append("augment adds turns to each scene's conversation: it needs conversations 'scene' "
                            "(with conversations 'question', pass --no-augment)")
        if self.conversations == "scene" and self.max_length < 384:
            problems.append(f"a scene's conversation is about 390 tokens (up to ~480), so max_length "
                            f"{self.max_length} would cut most of them: pass a max_length of 480")
        if self.lr <= 0 or self.init_std <= 0:
            problems.append("lr and init_std must be > 0")
        if problems:
            raise ValueError("invalid language pre-training settings: " + "; ".join(problems) + ".")
        return self


def equivalent_command(cfg: LanguagePretrainConfig) -> str:
    """The ``aki pretrain-llm`` line that makes this decoder again, every setting spelled out."""
    opts = {"--out": cfg.out, "--scenes": cfg.n_scenes, "--held-out-scenes": cfg.held_out_scenes,
            "--data-seed": cfg.data_seed, "--steps": cfg.steps, "--batch-size": cfg.batch_size, "--lr": cfg.lr,
            "--init-std": cfg.init_std, "--layers": cfg.layers, "--max-length": cfg.max_length, "--conversations": cfg.conversations,
            "--seed": cfg.seed, "--score-items": cfg.score_items}
    flags = ["--augment" if cfg.augment else "--no-augment"]
    return " ".join(["aki pretrain-llm", *(f"{k} {shlex.quote(str(v))}" for k, v in opts.items()), *flags])


def _experiment_settings(cfg: LanguagePretrainConfig, text_dir: Path):
    """The quickstart's settings with this stage's data, schedule and decoder initialisation."""
    from aki.experiments.runner import ExperimentSettings

    s = ExperimentSettings(out=str(Path(cfg.out) / WORK), data_dir=str(text_dir), progress=cfg.progress,
                           sft_steps=cfg.steps, batch_size=cfg.batch_size, sft_lr=cfg.lr,
                           sft_max_length=cfg.max_length, num_threads=cfg.num_threads,
                           language_model=None)  # this stage makes the decoder: start from a random one
    s.size.llm_init_std = cfg.init_std
    s.size.llm_layers = cfg.layers
    return s


def check_resumable(cfg: LanguagePretrainConfig) -> None:
    """A resumed run must be the same run: the saved settings, apart from the free ones, must match."""
    work = Path(cfg.out) / WORK
    saved_file = work / "settings.json"
    if not saved_file.is_file():
        return
    saved = json.loads(saved_file.read_text(encoding="utf-8"))
    now = asdict(cfg)
    saved = {**_BEFORE_IT_EXISTED, **saved}
    changed = [k for k in now if k not in _FREE_ON_RESUME and saved.get(k) != now[k]]
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise ValueError(f"--resume: {work} was started with other settings ({diffs}); use the same "
                         "settings to resume, or start over with --overwrite.")


def pretrain_language_model(cfg: LanguagePretrainConfig, command: str | None = None, say=print,
                            resume: bool = False) -> dict[str, Any]:
    """Make the data, train, score and export (see the module docstring); returns the summary that
    is also written to ``pretrain.json``. ``resume`` continues the run in ``out/work``."""
    from aki.progress import library_progress_bars

    with library_progress_bars(cfg.progress):
        return _pretrain(cfg, command, say, resume)


def _pretrain(cfg: LanguagePretrainConfig, command: str | None, say, resume: bool) -> dict[str, Any]:
    from aki.data.synth import generate
    from aki.experiments.runner import _stage_config
    from aki.experiments.tiny_vlm import build_tiny_vlm
    from aki.language.probe import text_accuracy
    from aki.language.scene_text import answer_prior, write_test_wording_questions, write_text_data
    from aki.training import train

    cfg.validate()
    out = Path(cfg.out)
    work = out / WORK
    if resume:
        check_resumable(cfg)
    elif work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "settings.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    scenes, text = work / "scenes", work / "text"
    if not (scenes / "metadata.json").is_file():  # written last: without it the folder is incomplete
        generate(scenes, n_train=cfg.n_scenes, n_test=0, seed=cfg.data_seed, overwrite=True)
    if not (text / "counts.json").is_file():  # likewise, written once both files are complete
        n_train, n_held = write_text_data(scenes, text, cfg.held_out_scenes, cfg.conversations, cfg.augment)
        (text / "counts.json").write_text(json.dumps({"train": n_train, "held_out": n_held}) + "\n")
        say(f"{cfg.n_scenes} scenes (seed {cfg.data_seed}) told in words: {n_train} training questions, "
            f"{n_held} about the {cfg.held_out_scenes} held-out scenes")
    if not (text / TEST_WORDING_FILE).is_file():  # written whole or not at all
        write_test_wording_questions(scenes, text, cfg.held_out_scenes)
    seconds["data"] = round(time.perf_counter() - t, 1)

    settings = _experiment_settings(cfg, text)
    init = work / "init"
    if not (init / "config.json").is_file():
        # The tokenizer is trained on these scenes' texts; the tower and resampler are only a shell
        # (text-only batches never reach them), built as the quickstart builds its model.
        build_tiny_vlm(scenes, settings.size, seed=cfg.seed, out_dir=init, vision_tower=settings.vision_tower)
    run_cfg = _stage_config(settings, stage="sft", init_dir=init, out_dir=work / "run", order="I&T",
                            rule="causal", seed=cfg.seed)
    run_cfg.save_every, run_cfg.keep_last_k, run_cfg.log_every = cfg.save_every, 2, max(1, min(50, cfg.steps // 4))
    run_cfg.data.turns = "whole" if cfg.conversations == "scene" else "split"
    final = work / "run" / "final"
    if not (resume and (final / "config.json").is_file()):
        train(run_cfg, resume=resume, start_if_missing=resume, overwrite=not resume)
    rows = _metrics(work / "run")
    seconds["train"] = _training_seconds(rows)

    t = time.perf_counter()
    heldout = text / "heldout.jsonl"
    trained = text_accuracy(final, heldout, cfg.score_items, cfg.max_length)
    untrained = text_accuracy(init, heldout, cfg.score_items, cfg.max_length)
    prior = answer_prior(text / "train" / "sft.jsonl", heldout, cfg.score_items)
    probe = {"held_out_questions": min(cfg.score_items, _count_lines(heldout)),
             "metric": "teacher-forced accuracy (%): every answer token the top prediction",
             **_columns(trained, untrained, prior)}
    # The same scenes asked in the test split's CV-Bench wording, which training never uses.
    wording = text / TEST_WORDING_FILE
    probe["test_wording"] = {
        "held_out_questions": min(cfg.score_items, _count_lines(wording)),
        **_columns(text_accuracy(final, wording, cfg.score_items, _TEST_WORDING_MAX_LENGTH),
                   text_accuracy(init, wording, cfg.score_items, _TEST_WORDING_MAX_LENGTH),
                   answer_prior(text / "train" / "sft.jsonl", wording, cfg.score_items))}
    seconds["probe"] = round(time.perf_counter() - t, 1)
    say(probe_table(probe))

    n_params = export_language_model(final, out)
    (out / "probe.json").write_text(json.dumps(probe, indent=2) + "\n")
    losses = [{"step": r["step"], "loss": round(r["loss"], 4)} for r in rows]
    summary = {"settings": asdict(cfg), "command": command or equivalent_command(cfg), "seed": cfg.seed,
               "parameters": n_params, "losses": losses, "seconds": seconds}
    (out / "pretrain.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def export_language_model(aki_dir: Path, out: Path) -> int:
    """Save the language model of the AKI model in ``aki_dir`` and its tokenizer to ``out``
    (``save_pretrained``); returns its parameter count."""
    from aki.model import AkiForConditionalGeneration
    from aki.processing import AkiProcessor

    model = AkiForConditionalGeneration.from_pretrained(aki_dir)
    tokenizer = AkiProcessor.from_pretrained(aki_dir).tokenizer
    lm = model.language_model
    lm.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in lm.parameters())


_COLUMNS = ("trained", "untrained", "answer_prior")


def _columns(trained: dict, untrained: dict, prior: dict) -> dict:
    scores = dict(zip(_COLUMNS, (trained, untrained, prior), strict=True))
    return {**scores, "mean": {c: _mean(v) for c, v in scores.items()}}


def probe_table(probe: dict) -> str:
    """The held-out accuracies as small tables: the trained decoder, the same decoder untrained, and
    the answer prior (always the most frequent training answer); then, when the probe has them, the
    same scenes asked in the test split's wording."""
    lines = _table(probe, f"held-out questions, scene told in words ({probe['held_out_questions']} items; "
                   "teacher-forced accuracy, %):")
    if "test_wording" in probe:
        lines += _table(probe["test_wording"], f"the same scenes in the test split's CV-Bench wording, never "
                        f"trained on ({probe['test_wording']['held_out_questions']} items):")
    return "\n".join(lines)


def _table(scores: dict, title: str) -> list[str]:
    lines = [title, f"  {'task/format':<24}" + "".join(f"{c:>14}" for c in _COLUMNS)]
    for key in scores["trained"]:
        lines.append(f"  {key:<24}" + "".join(f"{scores[c].get(key, float('nan')):>14.1f}" for c in _COLUMNS))
    lines.append(f"  {'mean':<24}" + "".join(f"{scores['mean'][c]:>14.1f}" for c in _COLUMNS))
    return lines


def _mean(scores: dict[str, float]) -> float:
    return round(sum(scores.values()) / len(scores), 1) if scores else float("nan")


def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _training_seconds(rows: list[dict]) -> float:
    """The trainer's wall time over all its sessions: ``elapsed_s`` restarts at each resume."""
    total, last = 0.0, 0.0
    for r in rows:
        if r["elapsed_s"] < last:
            total += last
        last = r["elapsed_s"]
    return round(total + last, 1)


def _count_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)
