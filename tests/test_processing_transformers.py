"""AkiProcessor as a transformers processor: save/load, AutoProcessor, old folders, the kwargs
transformers' image-text-to-text pipeline sends, refused kwargs, hub ids while offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, SiglipImageProcessorPil

from aki import pretrained as hub_module
from aki.masks import Segment
from aki.processing import AkiProcessor, build_tiny_tokenizer, siglip_image_processor
from aki.prompts import qa_messages, user_message

N_IMG = 4
RED = Image.new("RGB", (30, 20), (255, 0, 0))


@pytest.fixture(scope="module")
def proc() -> AkiProcessor:
    return AkiProcessor(image_processor=siglip_image_processor(16), tokenizer=build_tiny_tokenizer("llama3"),
                        num_image_tokens=N_IMG, family="llama3")


def _same(a, b) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_saved_folder_is_a_processormixin_folder(proc, tmp_path):
    proc.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert config["processor_class"] == "AkiProcessor"
    assert config["num_image_tokens"] == N_IMG and config["family"] == "llama3"
    assert config["image_processor"]["image_processor_type"] == "SiglipImageProcessor"
    assert config["image_processor"]["size"] == {"height": 16, "width": 16}
    assert (tmp_path / "chat_template.jinja").read_text() == proc.chat_template
    auto = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(auto, AkiProcessor) and isinstance(auto.image_processor, SiglipImageProcessorPil)
    prompt = proc.apply_chat_template([user_message("What is it?")])
    _same(auto(images=[RED], text=prompt), proc(images=[RED], text=prompt))
    assert AkiProcessor.from_pretrained(tmp_path, num_image_tokens=2).num_image_tokens == 2


def test_import_aki_is_enough_for_autoprocessor(proc, tmp_path):
    proc.save_pretrained(tmp_path)
    code = ("import aki\nfrom transformers import AutoProcessor\n"
            f"p = AutoProcessor.from_pretrained({str(tmp_path)!r})\nprint(type(p).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("AkiProcessor")


def test_folder_saved_by_the_older_processor_loads(proc, tmp_path):
    """The files aki wrote before AkiProcessor was a ProcessorMixin (written out here as they were)."""
    proc.tokenizer.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "AkiImageProcessor", "size": {"height": 16, "width": 16}, "resample": "bicubic",
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "rescale_factor": 1 / 255}))
    (tmp_path / "processor_config.json").write_text(json.dumps({
        "processor_class": "AkiProcessor", "num_image_tokens": N_IMG, "family": "llama3",
        "chat_template": proc.chat_template}))
    old = AkiProcessor.from_pretrained(tmp_path)
    conv = [qa_messages("What is it?", "A red cube.")]
    _same(old.encode_conversations(conv, [[RED]]), proc.encode_conversations(conv, [[RED]]))
    old.save_pretrained(tmp_path / "resaved")
    assert "image_processor" in json.loads((tmp_path / "resaved" / "processor_config.json").read_text())
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "AkiImageProcessor",
                                                                   "resample": "sideways"}))
    with pytest.raises(ValueError, match=r"sideways.*re-save it"):
        AkiProcessor.from_pretrained(tmp_path)


def test_model_folder_without_processor_files(tmp_path):
    """A model folder with only its config and tokenizer: size and image tokens from config.json."""
    from aki.testing import tiny_model

    model, tiny = tiny_model("qwen2")
    model.config.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    loaded = AkiProcessor.from_pretrained(tmp_path)
    assert loaded.num_image_tokens == model.config.resampler_config.num_latents
    assert loaded.image_processor.size == {"height": model.config.vision_config.image_size,
                                           "width": model.config.vision_config.image_size}
    with pytest.raises(FileNotFoundError, match=r"no processor_config\.json"):
        (tmp_path / "config.json").unlink()
        AkiProcessor.from_pretrained(tmp_path)


def test_pipeline_style_calls(proc, tmp_path):
    """What transformers' image-text-to-text pipeline sends, as it sends it."""
    path = tmp_path / "red.png"
    RED.save(path)
    messages = [{"role": "user", "content": [{"type": "image", "url": str(path)}, {"type": "text", "text": "Color?"}]}]
    batch = proc.apply_chat_template(messages, continue_final_message=False, return_tensors="pt", tokenize=True,
                                     return_dict=True, add_generation_prompt=True, processor_kwargs={})
    batch = batch.to(dtype=torch.bfloat16)
    assert batch["input_ids"].dtype == torch.long and batch["pixel_values"].dtype == torch.bfloat16
    assert int((batch["segments"] == Segment.IMAGE).sum()) == N_IMG
    openai = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": str(path)}},
                                           {"type": "text", "text": "Color?"}]}]
    _same(proc.apply_chat_template(openai, tokenize=True), proc.apply_chat_template(messages, tokenize=True))
    text = proc.apply_chat_template([user_message("Color?"), user_message("Shape?")][:1])
    two = proc(images=[[RED], [RED]], text=[text, text], return_tensors="pt", padding=True)
    assert two["input_ids"].shape[0] == 2
    ids = proc.apply_chat_template(messages, tokenize=True, return_dict=False)
    assert torch.equal(ids, batch["input_ids"])
    decoded = proc.post_process_image_text_to_text(batch["input_ids"][0])
    assert decoded == [proc.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True)]


def test_unknown_and_unsupported_kwargs_are_refused(proc):
    text = proc.apply_chat_template([user_message("Hi")])
    with pytest.raises(TypeError, match="return_attention_masks"):
        proc(images=[RED], text=text, return_attention_masks=True)
    with pytest.raises(ValueError, match="truncation=True is not supported: prompts are never cut"):
        proc(images=[RED], text=text, truncation=True)
    with pytest.raises(ValueError, match="padding='max_length' is not supported"):
        proc(images=[RED], text=text, padding="max_length")
    with pytest.raises(ValueError, match="add_special_tokens=True"):
        proc(images=[RED], text=text, add_special_tokens=True)
    with pytest.raises(ValueError, match="videos= and audio="):
        proc(images=[RED], text=text, videos=[RED])
    with pytest.raises(TypeError, match="enable_thinking"):
        proc.apply_chat_template([user_message("Hi")], enable_thinking=False)
    short = proc.apply_chat_template([user_message("Hi", 0)])
    with pytest.raises(ValueError, match="padding=False leaves rows of different lengths"):
        proc(text=[text, short], images=[[RED], []], padding=False)
    rows = proc(text=[text, short], images=[[RED], []], padding=False, return_tensors=None)
    assert [len(r) for r in rows["input_ids"]] == [len(r) for r in rows["segments"]]
    assert len(rows["input_ids"][0]) != len(rows["input_ids"][1]) and 0 not in rows["attention_mask"][0]
    # the older positional order (text, images) still works
    _same(proc(text, [RED]), proc(images=[RED], text=text))


def test_hub_ids_fail_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=r"'aki-test/not-a-real-repo'.*offline.*save_pretrained"):
        AkiProcessor.from_pretrained("aki-test/not-a-real-repo")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub_module, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(FileNotFoundError, match=r"'aki-test/not-a-real-repo'.*cannot be reached"):
        AkiProcessor.from_pretrained("aki-test/not-a-real-repo")
    assert time.perf_counter() - start < 5
    with pytest.raises(FileNotFoundError, match="nowhere"):
        AkiProcessor.from_pretrained("./nowhere")
