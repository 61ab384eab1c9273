"""Resuming a run: the saved settings against the requested ones, before anything is touched.

A checkpoint's step counter only means something together with the settings that produced it:
the same step of another seed, data set or rule is another run. So ``--resume`` first reads
``output_dir/config.yaml`` (written when the run started) and compares it, key by key, with the
requested config:

- :data:`FIXED` settings define what the run is: the stage, model init, attention rule and its
  options, input order, data (sources, turns, packing, augmentation, synthetic set), seed, global
  batch size, max_length, what the loss is on, vision freezing, precision and the optimiser and
  learning-rate schedule (``lr``, ``min_lr``, ``warmup_steps``, ``weight_decay``, ``betas``,
  ``grad_clip``: the optimizer and scheduler state in the checkpoint carry the old values, so a
  new one would be silently ignored). A difference is refused, listing every one.
- :data:`MUTABLE` settings may change and are applied, each printed: ``max_steps`` (a longer or
  shorter run; the cosine decay then ends at the new last step; refused under ``order: dot``,
  whose T&I/I&T switch sits at half of ``max_steps``), logging and save cadence, ``keep_last_k``,
  progress bars and loggers, DataLoader workers, the micro-batch split (``micro_batch_size``,
  ``grad_accum``: the loss is normalised per global batch, so the gradient is the same), thread
  count, and the skip-rate and guard limits.
- ``output_dir`` is where the run is, not what it is (a copied run folder resumes).

Nothing is written before the comparison passes; a refused resume leaves ``config.yaml`` and
every checkpoint as they were. Every field of :class:`TrainConfig` must be in exactly one of the
sets (a test checks it), so a new setting cannot slip through unclassified.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aki.training import checkpoint as ckpt
from aki.training.config import ConfigError, TrainConfig, to_dict

SECTIONS = ("init", "data")
"""Config sections compared key by key (``init.llm``, ``data.sources``); other values whole."""

FIXED = frozenset({
    "stage", "seed", "attention_rule", "rule_options", "order", "batch_size", "max_length", "loss_on",
    "caption_segment", "freeze_vision", "precision", "lr", "min_lr", "warmup_steps", "weight_decay", "betas",
    "grad_clip",
    "init.tiny", "init.from_dir", "init.vision", "init.llm", "init.seed", "init.dtype",
    "data.sources", "data.turns", "data.packing", "data.pack_length", "data.augment", "data.synth_dir",
    "data.synth_scenes", "data.synth_seed",
})
MUTABLE = frozenset({
    "max_steps", "log_every", "save_every", "keep_last_k", "progress", "tensorboard", "wandb", "wandb_project",
    "num_threads", "micro_batch_size", "grad_accum", "max_skip_rate", "min_records_for_skip_rate",
    "guard_batches", "data.num_workers", "data.prefetch_factor",
})
WHERE = frozenset({"output_dir"})
CONFIG_FILE = "config.yaml"


def flatten(cfg: dict[str, Any]) -> dict[str, Any]:
    """``{"init": {"llm": x}, "lr": y}`` -> ``{"init.llm": x, "lr": y}`` (JSON-normalised values,
    so a YAML list equals a tuple; the attention rule is the effective one)."""
    out: dict[str, Any] = {}
    cfg = dict(cfg)
    if "unlock_fraction" in cfg and "rule_options" not in cfg:  # written before rule_options existed
        fraction = cfg.pop("unlock_fraction")
        cfg["rule_options"] = {} if fraction is None else {"unlock_fraction": fraction}
    for key, value in cfg.items():
        if key in SECTIONS and isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    stage = out.get("stage", "pt")
    out["attention_rule"] = out.get("attention_rule") or ("causal" if stage == "pt" else "mma")
    return json.loads(json.dumps(out, default=str))


@dataclass
class ResumePlan:
    """What ``--resume`` (or ``--resume-or-start``) will do, decided before anything is written."""

    checkpoint: Path | None
    step: int = 0
    changes: list[str] = field(default_factory=list)
    """The MUTABLE settings that differ, as printable ``key: old -> new`` lines."""


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def compare(saved: dict[str, Any], requested: TrainConfig) -> tuple[list[str], list[str]]:
    """``(refused, applied)``: the differing FIXED and MUTABLE settings as ``key: saved -> requested``
    lines. Keys the saved config has and this version does not know count as refused."""
    old, new = flatten(saved), flatten(to_dict(requested))
    refused, applied = [], []
    for key in sorted(set(old) | set(new)):
        if key in WHERE or old.get(key) == new.get(key):
            continue
        line = f"{key}: {_show(old.get(key, '(not set)'))} -> {_show(new.get(key, '(not set)'))}"
        (applied if key in MUTABLE else refused).append(line)
    if requested.order == "dot" and old.get("max_steps") != new.get("max_steps"):
        refused.append(f"max_steps: {old.get('max_steps')} -> {new.get('max_steps')} (order: dot switches from "
                       "T&I to I&T at half of max_steps, so the steps already trained would change order)")
        applied = [a for a in applied if not a.startswith("max_steps:")]
    return refused, applied


def read_saved_config(out: Path) -> dict[str, Any] | None:
    """The run's saved ``config.yaml`` as a mapping (None when there is none)."""
    path = out / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{str(path)!r} is not valid YAML ({err}); restore it from a backup, or start over "
                          "with --overwrite.") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{str(path)!r} is not a mapping of settings; restore it, or start over with --overwrite.")
    return saved


def plan_resume(cfg: TrainConfig, start_if_missing: bool = False) -> ResumePlan:
    """Check that ``cfg`` may continue the run in ``cfg.output_dir``; raise :class:`ConfigError`
    listing every refused difference. Reads only."""
    out = Path(cfg.output_dir)
    latest = ckpt.latest_checkpoint(out)
    saved = read_saved_config(out)
    if latest is None:
        if not start_if_missing:
            had_run = (out / "metrics.jsonl").exists()
            what = ("holds a run that stopped before its first checkpoint" if had_run
                    else "holds no checkpoint" if out.exists() else "does not exist")
            raise ConfigError(
                f"--resume: {str(out)!r} {what}, so there is nothing to resume; pass --resume-or-start to start a "
                f"new run when there is no checkpoint{', or --overwrite to start over' if had_run else ''}, or "
                "drop --resume."
            )
    elif saved is None:
        raise ConfigError(
            f"--resume: {str(out / CONFIG_FILE)!r} is missing, so the settings of the run in {str(out)!r} cannot be "
            "compared with the requested ones; restore it (it is written when a run starts), or start over with "
            "--overwrite."
        )
    refused, applied = compare(saved, cfg) if saved is not None else ([], [])
    if refused:
        raise ConfigError(
            f"--resume: the run in {str(out)!r} was made with other settings, and continuing it with these would "
            f"change what it is: {'; '.join(refused)}. Resume with the saved settings ({str(out / CONFIG_FILE)!r}), "
            "or start a new run in another output_dir (or over this one with --overwrite)."
        )
    step = 0
    if latest is not None:
        step = ckpt.checkpoint_step(latest)
        if step > cfg.max_steps:
            raise ConfigError(f"--resume: the latest checkpoint ({latest.name}) is past max_steps={cfg.max_steps}; "
                              f"set max_steps to {step} or more.")
    if any(a.startswith("max_steps:") for a in applied):
        applied = [a + (f" (the cosine decay now ends at step {cfg.max_steps})" if a.startswith("max_steps:") else "")
                   for a in applied]
    return ResumePlan(checkpoint=latest, step=step, changes=applied)


__all__ = ["FIXED", "MUTABLE", "WHERE", "ResumePlan", "compare", "flatten", "plan_resume", "read_saved_config"]
