"""FSDP2 over gloo with 2 CPU processes: the same losses as one process on the same global batch,
sharded (DCP) checkpoints, and resumption onto another world size (2 -> 1 and 1 -> 2).

Tolerance: one process and two see the same samples per step, but sum them in another order
(two ranks' partial gradients are reduce-scattered; micro-batches are grouped differently), so
float32 results differ in the last bits (~1e-7 relative per sum). AdamW divides by the root of
the second moment, which carries those differences into the weights at the same relative size,
and a few steps later the losses agree to about 1e-5 relative; 2e-4 leaves room for that and is
still far below any real change (a wrong sample, a skipped step or a lost optimizer state moves
the loss by 1e-2 or more on this tiny model).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aki.training import load_config, train

ROOT = Path(__file__).parent.parent
TOL = {"rel": 2e-4, "abs": 2e-4}


def torchrun(cfg: dict, path: Path, *extra: str) -> str:
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "aki.cli.main", "train", str(path), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def losses(out: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]


def keep_only_step(out: Path, step: int) -> None:
    """Leave ``out`` as a run stopped right after checkpoint ``step``."""
    for p in (out / "checkpoints").iterdir():
        if p.name != f"step-{step:08d}":
            shutil.rmtree(p)
    rows = [x for x in (out / "metrics.jsonl").read_text().splitlines() if json.loads(x)["step"] <= step]
    (out / "metrics.jsonl").write_text("".join(r + "\n" for r in rows))
    shutil.rmtree(out / "final", ignore_errors=True)


def test_two_processes_match_one_and_resume_across_world_sizes(tmp_path):
    from aki.data.synth import generate

    synth = tmp_path / "synth"
    generate(synth, n_train=24, n_test=0, seed=0)
    base = {
        "stage": "pt", "max_steps": 4, "seed": 0, "init": {"tiny": "llama"},
        "data": {"sources": [{"format": "pt_shards", "path": str(synth / "train" / "pt-*.tar")}], "num_workers": 1},
        "batch_size": 4, "micro_batch_size": 1, "max_length": 64, "lr": 3e-3, "min_lr": 3e-4,
        "warmup_steps": 1, "log_every": 1, "save_every": 2, "keep_last_k": 3, "progress": False,
        "tensorboard": False, "num_threads": 1,
    }
    # one process, uninterrupted (the reference); keep its step-2 checkpoint for the 1 -> 2 resume
    single = train(load_config(raw={**base, "output_dir": str(tmp_path / "one")}))["losses"]
    assert len(single) == 4 and single[-1] < single[0]
    shutil.copytree(tmp_path / "one", tmp_path / "one-to-two")
    keep_only_step(tmp_path / "one-to-two", 2)

    # two processes from scratch: same losses; every rank wrote its own shards, nothing gathered
    log = torchrun({**base, "output_dir": str(tmp_path / "two")}, tmp_path / "two.yaml")
    assert "world=2" in log and "view tensor" not in log
    assert losses(tmp_path / "two") == pytest.approx(single, **TOL)
    state = tmp_path / "two" / "checkpoints" / "step-00000004" / "state"
    assert sorted(p.name for p in state.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert not list(state.parent.glob("*.pt")) or [p.name for p in state.parent.glob("*.pt")] == ["scheduler.pt"]
    assert (tmp_path / "two" / "final" / "model.safetensors").exists()

    # 2 -> 1: the two-process run stopped at step 2 resumes in one process
    keep_only_step(tmp_path / "two", 2)
    resumed = train(load_config(raw={**base, "output_dir": str(tmp_path / "two")}), resume=True)["losses"]
    assert resumed == pytest.approx(single[2:], **TOL)

    # 1 -> 2: the one-process run stopped at step 2 resumes in two processes
    log = torchrun({**base, "output_dir": str(tmp_path / "one-to-two")}, tmp_path / "up.yaml", "--resume")
    assert "written by 1 processes" in log
    assert losses(tmp_path / "one-to-two") == pytest.approx(single, **TOL)
