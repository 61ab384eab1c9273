"""A saved aki folder works in transformers' own ``image-text-to-text`` pipeline, MMA prefill included."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from aki.testing import tiny_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, processor = tiny_model("phi3", rule="mma", seed=3)
    folder = tmp_path_factory.mktemp("aki-pipeline")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, model, processor


def test_pipeline_answers_like_aki_generate(saved):
    from transformers import pipeline

    folder, model, processor = saved
    image = Image.new("RGB", (40, 40), (200, 30, 30))
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": "What colour is the square?"}]}]
    pipe = pipeline("image-text-to-text", model=str(folder))
    assert type(pipe.model).__name__ == "AkiForConditionalGeneration"
    assert pipe.model.config.attention_rule == "mma"
    answer = pipe(text=messages, max_new_tokens=6, generate_kwargs={"do_sample": False})[0]["generated_text"][-1]["content"]

    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is the square?"}]}],
        add_generation_prompt=True)
    batch = processor(text=[prompt], images=[[image]], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=6, do_sample=False)
    expected = processor.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)[0]
    assert answer == expected

    # the prompt really is read under MMA: the same weights under causal attention give other logits
    causal, _ = tiny_model("phi3", rule="causal", seed=3)
    with torch.no_grad():
        assert not torch.allclose(model(**batch).logits[:, -1], causal(**batch).logits[:, -1])
