"""The benchmark scripts still run (their numbers are read by people, never asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_prefill_benchmark_runs_every_variant_on_cpu():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_prefill.py"), "--device", "cpu", "--repeats", "1",
         "--length", "300", "--batch", "1", "--vocab", "512"],
        capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    for variant in ("native causal (LLM, no mask)", "aki causal", "aki mma (flex)", "aki mma (sdpa, dense mask)"):
        assert variant in out.stdout
    assert "BlockMask blocks computed, MMA / causal:" in out.stdout
    share = float(out.stdout.split("MMA / causal:")[1].split()[0])
    assert share >= 1.0  # MMA unlocks blocks; it never computes fewer than causal
