"""What a run prints and writes: the final line with skipped records by kind, no bar at all
under ``progress: false``, numbers at sensible precision, files with normal modes (issue 13)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aki.cli.errors import DEBUG_ENV
from aki.cli.main import app
from aki.training.feedback import _fmt


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setenv(DEBUG_ENV, "")


@pytest.fixture(scope="module")
def half_broken(tmp_path_factory) -> Path:
    """An SFT file whose every other row names an image that does not exist."""
    from aki.data.synth import generate

    root = tmp_path_factory.mktemp("broken")
    generate(root / "synth", n_train=6, n_test=0, seed=0)
    rows = [json.loads(x) for x in (root / "synth" / "train" / "sft.jsonl").read_text().splitlines()][:24]
    for k, row in enumerate(rows):
        row["image"] = str(root / "synth" / "train" / row["image"]) if k % 2 else str(root / f"gone-{k}.png")
    path = root / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run(tmp_path: Path, data: Path, progress: bool) -> tuple[object, Path]:
    out = tmp_path / "run"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "output_dir": str(out), "stage": "sft", "max_steps": 2, "init": {"tiny": "llama"}, "batch_size": 4,
        "max_length": 96, "warmup_steps": 1, "log_every": 1, "save_every": 2, "guard_batches": 1,
        "max_skip_rate": 1.0, "progress": progress, "tensorboard": False,
        "data": {"sources": [{"format": "sft_llava", "path": str(data)}], "num_workers": 0}}))
    return CliRunner().invoke(app, ["train", str(config)]), out


def test_final_line_counts_skipped_records_by_kind_and_no_bar_is_shown(half_broken, tmp_path):
    result, out = _run(tmp_path, half_broken, progress=False)
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("done: 2 steps, final loss ") and f"model in {out / 'final'}" in last
    skipped = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    n = skipped["skipped"]
    assert n > 0 and f"{skipped['records']} records read, {n} skipped (missing_image: {n})" in last
    # no progress bar, ours or the libraries' (transformers' "Writing model shards" included)
    assert "%|" not in result.output and "it/s" not in result.output and "Writing" not in result.output


def test_progress_bars_show_short_numbers(half_broken, tmp_path):
    result, _ = _run(tmp_path, half_broken, progress=True)
    assert result.exit_code == 0, result.output
    assert re.search(r"(pt|sft) [a-z]+: 100%\|", result.output), result.output  # one bar, named by stage and rule
    shown = re.findall(r"(?:tok_s|loss|lr)=([0-9.e+-]+)", result.output)
    assert len(shown) >= 3

    def digits(x: str) -> int:
        return len(x.split("e")[0].replace(".", "").lstrip("0"))

    # tok_s=2968 or 314.7, never tok_s=2968.0816: 4 significant digits, whole numbers from 1000 on
    assert all(digits(x) <= 4 or ("." not in x and "e" not in x) for x in shown), shown


@pytest.mark.parametrize("value, shown", [(2968.0816, "2968"), (123456.7, "123457"), (5.66887, "5.669"),
                                          (0.00165, "0.00165"), (3e-05, "3e-05"), (0.0, "0.0"), (2, "2")])
def test_numbers_at_sensible_precision(value, shown):
    assert _fmt(value) == shown


def test_written_files_have_normal_modes(tmp_path):
    """safetensors >= 0.8 creates its file 0600 (a temporary file renamed into place); aki's
    save_pretrained gives it the mode the folder's other files have."""
    from aki.testing import tiny_model

    model, processor = tiny_model("llama")
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "m").iterdir()}
    assert modes["model.safetensors"] == expected == modes["config.json"], modes
