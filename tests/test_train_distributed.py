"""FSDP2 over gloo with 2 CPU processes: same losses as one process on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aki.training import load_config, train


def test_two_process_fsdp_matches_single_process(tmp_path):
    from aki.data.synth import generate

    synth = tmp_path / "synth"
    generate(synth, n_train=24, n_test=0, seed=0)
    base = {
        "stage": "pt", "max_steps": 3, "seed": 0, "init": {"tiny": "llama"},
        "data": {"sources": [{"format": "pt_shards", "path": str(synth / "train" / "pt-*.tar")}]},
        "batch_size": 4, "micro_batch_size": 1, "max_length": 64, "lr": 3e-3, "min_lr": 3e-4,
        "warmup_steps": 1, "log_every": 1, "save_every": 2, "progress": False, "tensorboard": False,
        "num_threads": 1,
    }
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump({**base, "output_dir": str(tmp_path / "fsdp")}))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "aki.cli.main", "train", str(cfg_path)],
        cwd=Path(__file__).parent.parent, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "world=2" in proc.stdout + proc.stderr
    fsdp = [json.loads(x)["loss"] for x in (tmp_path / "fsdp" / "metrics.jsonl").read_text().splitlines()]

    single = train(load_config(raw={**base, "output_dir": str(tmp_path / "one")}))["losses"]
    assert len(fsdp) == len(single) == 3
    assert fsdp == pytest.approx(single, rel=2e-4, abs=2e-4)
    assert single[-1] < single[0]
    assert (tmp_path / "fsdp" / "final" / "model.safetensors").exists()
    assert (tmp_path / "fsdp" / "checkpoints" / "step-00000003" / "rank-00001.pt").exists()
