"""Shared pytest set-up: offline, deterministic, slow tests opt-in."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow end-to-end test: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def synth_train(tmp_path_factory) -> Callable[[int], Path]:
    """``synth_train(n)``: a folder of ``aki data synth`` training data (n scenes, seed 0, no test
    split), made once per size per session. Read-only for tests: copy it before changing it."""
    made: dict[int, Path] = {}

    def make(n_train: int) -> Path:
        if n_train not in made:
            from aki.data.synth import generate

            made[n_train] = tmp_path_factory.mktemp(f"synth-{n_train}")
            generate(made[n_train], n_train=n_train, n_test=0, seed=0)
        return made[n_train]

    return make


@pytest.fixture(scope="session")
def saved_tiny_model(tmp_path_factory) -> Path:
    """A tiny random llama-family AKI model and its processor saved with ``save_pretrained`` (read-only)."""
    from aki.testing import tiny_model

    path = tmp_path_factory.mktemp("aki-tiny")
    model, processor = tiny_model("llama")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
