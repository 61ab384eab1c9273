"""aki.pretrained: model folders and safetensors files checked before transformers reads them."""

from __future__ import annotations

import json
import struct
import time

import pytest
import torch
from safetensors.torch import save_file

from aki.model import AkiForConditionalGeneration
from aki.pretrained import DamagedFileError, check_model_folder, check_safetensors


@pytest.fixture()
def weights(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(64), "b": torch.ones(3, 5)}, str(path))
    return path


def test_a_complete_file_passes(weights):
    check_safetensors(weights)


@pytest.mark.parametrize("cut", [3, 8 + 10, -1, -200])
def test_truncated_files_are_named(weights, cut):
    data = weights.read_bytes()
    weights.write_bytes(data[:cut])
    with pytest.raises(DamagedFileError, match=r"w\.safetensors'.*(truncated|complete).*again"):
        check_safetensors(weights)


def test_a_longer_file_and_a_bad_header_are_named(weights):
    data = weights.read_bytes()
    weights.write_bytes(data + b"\0" * 4)
    with pytest.raises(DamagedFileError, match="longer than its header says"):
        check_safetensors(weights)
    n = struct.unpack("<Q", data[:8])[0]
    weights.write_bytes(data[:8] + b"{" * n + data[8 + n:])
    with pytest.raises(DamagedFileError, match="not valid JSON"):
        check_safetensors(weights)


def test_from_pretrained_itself_explains(tmp_path, monkeypatch):
    """transformers users get the same messages: AkiForConditionalGeneration.from_pretrained."""
    with pytest.raises(FileNotFoundError, match=r"no model folder at '.*nowhere'.*does not exist.*aki train"):
        AkiForConditionalGeneration.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sft.jsonl").write_text("{}\n")
    with pytest.raises(FileNotFoundError, match=r"is a data folder \(it holds sft\.jsonl\)"):
        AkiForConditionalGeneration.from_pretrained(tmp_path / "data")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=r"'aki-test/nothing' is not a local folder.*offline"):
        AkiForConditionalGeneration.from_pretrained("aki-test/nothing")
    assert time.perf_counter() - start < 5


def test_a_run_folder_stands_for_its_final_model(tmp_path):
    from aki.testing import tiny_model

    model, _ = tiny_model("llama")
    model.save_pretrained(tmp_path / "run" / "final")
    assert check_model_folder(tmp_path / "run") == str(tmp_path / "run" / "final")
    loaded = AkiForConditionalGeneration.from_pretrained(tmp_path / "run")
    assert torch.equal(loaded.resampler.latents, model.resampler.latents)
    index = tmp_path / "sharded"
    model.save_pretrained(index, max_shard_size="200KB")
    assert (index / "model.safetensors.index.json").is_file()
    check_model_folder(index)
    shard = sorted(index.glob("model-*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(DamagedFileError, match=shard.name):
        check_model_folder(index)
    json.loads((index / "config.json").read_text())  # the folder's other files are untouched
