"""Pre-train a small SigLIP vision tower on synthetic scenes, then show what it sees.

The result is a transformers ``SiglipVisionModel`` saved with ``save_pretrained`` (plus the
``preprocessor_config.json`` of the :class:`aki.processing.AkiImageProcessor` that feeds it), so a
VLM starts from it exactly as AKI starts from a pretrained SigLIP, and freezes it in both stages.
The folder also keeps ``pretrain.json`` (settings, command, seed, losses, seconds) and
``probe.json`` (held-out probes of this tower and of the same tower untrained).
"""

from __future__ import annotations

import json
import math
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aki.vision.data import TowerData, make_tower_data
from aki.vision.objective import DenseHeads, dense_loss
from aki.vision.probe import PROBES, extract_features, pixel_values, probe_features


@dataclass
class VisionPretrainConfig:
    """Data, tower size and schedule. Defaults: measured on 2 CPU cores (see the README)."""

    out: str = "runs/vision"
    n_scenes: int = 20000
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.05
    seed: int = 0
    image_size: int = 64
    patch_size: int = 8
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    probe_train_scenes: int = 2000
    probe_test_scenes: int = 500
    probe_steps: int = 300
    num_threads: int | None = None
    workers: int | None = None
    progress: bool = True

    def validate(self) -> VisionPretrainConfig:
        problems = []
        if self.image_size % self.patch_size:
            problems.append(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.hidden_size % self.heads:
            problems.append(f"hidden_size {self.hidden_size} is not a multiple of heads {self.heads}")
        for name in ("n_scenes", "steps", "batch_size", "probe_train_scenes", "probe_test_scenes"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if problems:
            raise ValueError("invalid vision pre-training settings: " + "; ".join(problems) + ".")
        return self


def tower_config(cfg: VisionPretrainConfig):
    """The ``SiglipVisionConfig`` of the tower (no pooling head: the VLM reads patch features)."""
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(
        image_size=cfg.image_size, patch_size=cfg.patch_size, hidden_size=cfg.hidden_size,
        intermediate_size=cfg.hidden_size * cfg.mlp_ratio, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, vision_use_head=False,
    )


def new_tower(cfg: VisionPretrainConfig):
    """A randomly initialised tower, a pure function of ``cfg.seed``."""
    from transformers import SiglipVisionModel

    torch.manual_seed(cfg.seed)
    return SiglipVisionModel(tower_config(cfg))


def _schedule(cfg: VisionPretrainConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return factor


def train_tower(cfg: VisionPretrainConfig, data: TowerData, image_processor, log=None) -> tuple[Any, list[dict]]:
    """Train a new tower with the dense heads on ``data``; returns the tower and the loss log."""
    from tqdm.auto import tqdm

    tower = new_tower(cfg)
    heads = DenseHeads(cfg.hidden_size)
    params = list(tower.parameters()) + list(heads.parameters())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg))
    rng = np.random.default_rng(cfg.seed)
    order = np.concatenate([rng.permutation(len(data)) for _ in range(
        math.ceil(cfg.steps * cfg.batch_size / len(data)))])
    tower.train()
    heads.train()
    history: list[dict] = []
    window: dict[str, float] = {}
    bar = tqdm(total=cfg.steps, desc="vision tower", unit="step", disable=not cfg.progress,
               dynamic_ncols=True)
    for step in range(cfg.steps):
        idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        feats = tower(pixel_values=pixel_values(data.pixels[idx], image_processor)).last_hidden_state
        loss, parts = dense_loss(heads(feats), data.targets(idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        for k, v in {"loss": float(loss.detach()), **parts}.items():
            window[k] = window.get(k, 0.0) + v
        bar.update(1)
        every = max(1, cfg.steps // 10)
        if (step + 1) % every == 0 or step + 1 == cfg.steps:
            n = every if (step + 1) % every == 0 else (step + 1) % every
            row = {"step": step + 1, **{k: round(v / n, 4) for k, v in window.items()}}
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            if log is not None:
                log(row)
            window = {}
    bar.close()
    tower.eval()
    return tower, history


def probe_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """The probe scores side by side (one column per tower), in %."""
    cols = list(results)
    lines = [f"{'probe (held-out scenes)':<26}" + "".join(f"{c:>11}" for c in cols) + f"{'chance':>9}"]
    for p in PROBES:
        first = results[cols[0]][p]
        lines.append(f"{p:<26}" + "".join(f"{results[c][p]['accuracy']:>11.1f}" for c in cols)
                     + f"{first['chance']:>9.1f}")
    return "\n".join(lines)


def pretrain_vision(cfg: VisionPretrainConfig, command: str | None = None, say=print) -> dict[str, Any]:
    """Data -> tower -> probes (trained and untrained) -> ``cfg.out``; returns the summary."""
    from aki.processing import AkiImageProcessor

    cfg.validate()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    image_processor = AkiImageProcessor(size=cfg.image_size)
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    def scenes(n: int, split: str) -> TowerData:
        return make_tower_data(n, split, cfg.seed, cfg.image_size, cfg.patch_size, cfg.workers)

    data = scenes(cfg.n_scenes, "vision-train")
    probe_tr = scenes(cfg.probe_train_scenes, "vision-probe-train")
    probe_te = scenes(cfg.probe_test_scenes, "vision-probe-test")
    seconds["data"] = time.perf_counter() - t
    n_all = cfg.n_scenes + cfg.probe_train_scenes + cfg.probe_test_scenes
    say(f"rendered {n_all} scenes in {seconds['data']:.1f} s ({n_all / max(seconds['data'], 1e-9):.0f} scenes/s)")

    t = time.perf_counter()
    def log(row: dict) -> None:
        if not cfg.progress:
            main = ("loss", "shape", "name_count", "hides", "under_shape", "centre")
            say(f"  step {row['step']}: " + ", ".join(f"{k} {row[k]:.3f}" for k in main))

    tower, history = train_tower(cfg, data, image_processor, log=log)
    seconds["train"] = time.perf_counter() - t
    say(f"trained the tower: {cfg.steps} steps in {seconds['train']:.1f} s, final loss {history[-1]['loss']:.3f}")

    t = time.perf_counter()
    results = {}
    for label, model in (("untrained", new_tower(cfg)), ("trained", tower)):
        f_tr = extract_features(model, probe_tr.pixels, image_processor)
        f_te = extract_features(model, probe_te.pixels, image_processor)
        results[label] = probe_features(f_tr, probe_tr, f_te, probe_te, cfg.probe_steps, cfg.seed)
    seconds["probe"] = time.perf_counter() - t
    table = probe_table(results)
    say(table)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one line of output per stage, not transformers' shard bar
    tower.save_pretrained(out)
    image_processor.save_pretrained(out)
    probe = {"towers": results, "probe_train_scenes": cfg.probe_train_scenes,
             "probe_test_scenes": cfg.probe_test_scenes, "probe_steps": cfg.probe_steps,
             "seed": cfg.seed, "note": "accuracy in %; chance = majority class of the test items"}
    (out / "probe.json").write_text(json.dumps(probe, indent=2) + "\n")
    summary = {"settings": asdict(cfg), "command": command or equivalent_command(cfg), "seed": cfg.seed,
               "parameters": sum(p.numel() for p in tower.parameters()), "seconds": seconds,
               "history": history, "torch": torch.__version__, "threads": torch.get_num_threads()}
    (out / "pretrain.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {**summary, "probe": results, "table": table, "out": str(out)}


def equivalent_command(cfg: VisionPretrainConfig) -> str:
    """The ``aki pretrain-vision`` line that makes this tower again, every setting that shapes it
    spelled out (so the record holds whatever defaults or caller made the run); the settings the
    command line does not expose (schedule, weight decay) are in ``pretrain.json["settings"]``."""
    opts = {"--out": cfg.out, "--scenes": cfg.n_scenes, "--steps": cfg.steps, "--batch-size": cfg.batch_size,
            "--lr": cfg.lr, "--seed": cfg.seed, "--image-size": cfg.image_size, "--patch-size": cfg.patch_size,
            "--hidden-size": cfg.hidden_size, "--layers": cfg.layers, "--heads": cfg.heads,
            "--probe-train-scenes": cfg.probe_train_scenes, "--probe-test-scenes": cfg.probe_test_scenes,
            "--probe-steps": cfg.probe_steps}
    return " ".join(["aki pretrain-vision", *(f"{k} {shlex.quote(str(v))}" for k, v in opts.items())])
