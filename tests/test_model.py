"""The AKI model: image splicing, the attention rules reaching the decoder, backends, save/load."""

from __future__ import annotations

import pytest
import torch

from aki.masks import RULE_NAMES, Segment
from aki.model import AkiConfig, AkiForConditionalGeneration
from aki.testing import BACKBONES, build_seeded, make_batch, tiny_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _image_states(model, batch) -> torch.Tensor:
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    img = batch["segments"] == Segment.IMAGE
    return out.hidden_states[-1][img]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_mma_lets_image_tokens_see_the_question_and_causal_does_not(backbone):
    cfg_mma = tiny_config(backbone, "mma")
    model = build_seeded(cfg_mma, 0)
    a = make_batch(cfg_mma, ["TT I QQQQ"], seed=1)
    b = {**a, "input_ids": a["input_ids"].clone()}
    q = a["segments"] == Segment.QUERY
    b["input_ids"][q] = (a["input_ids"][q] % 50) + 1  # only the question changes
    assert not torch.equal(a["input_ids"], b["input_ids"])
    assert not torch.allclose(_image_states(model, a), _image_states(model, b), atol=1e-5)

    causal = build_seeded(tiny_config(backbone, "causal"), 0)
    causal.load_state_dict(model.state_dict())
    torch.testing.assert_close(_image_states(causal, a), _image_states(causal, b), atol=0, rtol=0)


def test_forward_shapes_loss_and_hidden_states():
    cfg = tiny_config("llama", "mma")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, ["T I QQ AAA", "TT QQQ AA"], padding="right")
    labels = torch.where(batch["segments"] == Segment.ANSWER, batch["input_ids"], -100)
    out = model(**batch, labels=labels, output_hidden_states=True)
    B, L = batch["input_ids"].shape
    assert out.logits.shape == (B, L, cfg.text_config.vocab_size)
    assert len(out.hidden_states) == cfg.text_config.num_hidden_layers + 1
    assert all(h.shape == (B, L, cfg.text_config.hidden_size) for h in out.hidden_states)
    # mean next-token cross-entropy over the non -100 labels, after the shift
    logits, tgt = out.logits[:, :-1], labels[:, 1:]
    keep = tgt != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], tgt[keep])
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.resampler.latents.grad is not None
    assert all(p.grad is None for p in model.vision_tower.parameters())  # frozen


def test_image_features_are_spliced_at_image_tokens():
    cfg = tiny_config("qwen2", "causal")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, ["T I T I Q"])
    feats = model.get_image_features(batch["pixel_values"])
    assert feats.shape == (2, cfg.num_image_tokens, cfg.text_config.hidden_size)
    embeds = model.embed(batch["input_ids"], batch["pixel_values"])
    img = batch["input_ids"] == cfg.image_token_id
    torch.testing.assert_close(embeds[img], feats.reshape(-1, feats.shape[-1]))


def test_image_count_mismatch_is_a_clear_error():
    cfg = tiny_config("llama", "mma")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, ["T I QQ", "T I QQ"])
    with pytest.raises(ValueError, match="image tokens"):
        model(**{**batch, "pixel_values": batch["pixel_values"][:1]})
    with pytest.raises(ValueError, match="image tokens"):
        model(**{**batch, "pixel_values": None})


def test_rules_other_than_causal_need_segments_when_there_are_images():
    cfg = tiny_config("llama", "mma")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, ["T I QQ"])
    with pytest.raises(ValueError, match="needs `segments`"):
        model(**{**batch, "segments": None})
    text_only = make_batch(cfg, ["TT QQ"])
    model(**{**text_only, "segments": None})  # no images: nothing to unlock, causal is exact
    causal = build_seeded(tiny_config("llama", "causal"), 0)
    causal(**{**batch, "segments": None})


def test_flash_attention_is_refused_for_custom_rules():
    cfg = tiny_config("llama", "mma")
    model = build_seeded(cfg, 0)
    model.language_model.config._attn_implementation = "flash_attention_2"  # no flash on CPU: set directly
    batch = make_batch(cfg, ["T I QQ"])
    with pytest.raises(ValueError, match="silently"):
        model(**batch)


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_sdpa_and_eager_give_the_same_logits(rule):
    cfg = tiny_config("phi3", rule)
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, ["TT I QQQ A", "T I QQ T I QQQQ"])
    valid = batch["attention_mask"].bool()
    with torch.no_grad():
        sdpa = model(**batch).logits
        model.set_attn_implementation("eager")
        assert model.attn_implementation == "eager"
        eager = model(**batch).logits
    torch.testing.assert_close(sdpa[valid], eager[valid], atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_flex_attention_gives_the_same_logits():
    cfg = tiny_config("llama", "mma")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, ["TT I QQQ", "T I QQQQQ"])
    valid = batch["attention_mask"].bool()
    with torch.no_grad():
        ref = model(**batch).logits
        model.set_attn_implementation("flex_attention")
        flex = model(**batch).logits
        tokens = model.generate(**batch, max_new_tokens=3)
        model.set_attn_implementation("sdpa")
        assert torch.equal(tokens, model.generate(**batch, max_new_tokens=3))
    torch.testing.assert_close(ref[valid], flex[valid], atol=1e-5, rtol=1e-4)


def test_left_padding_does_not_change_a_row():
    cfg = tiny_config("qwen3", "mma")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, ["TT I QQQ", "T I QQQQQQQQ"])
    single = make_batch(cfg, ["TT I QQQ"])
    with torch.no_grad():
        padded = model(**batch).logits[0][batch["attention_mask"][0].bool()]
        alone = model(**{**single, "pixel_values": batch["pixel_values"][:1]}).logits[0]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-4)


def _stable(d):
    """A config dict without what loading legitimately fills in (source path, resolved dtype)."""
    if isinstance(d, dict):
        return {k: _stable(v) for k, v in d.items() if k not in ("_name_or_path", "dtype", "transformers_version")}
    return d


def test_save_and_load_round_trip(tmp_path):
    cfg = tiny_config("phi3", "cca", lm_head_bias=True, unlock_fraction=None)
    model = build_seeded(cfg, 3)
    with torch.no_grad():
        model.language_model.lm_head.bias.normal_()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AkiForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert _stable(loaded.config.to_dict()) == _stable(model.config.to_dict())
    assert isinstance(loaded.config, AkiConfig)
    assert loaded.config.resampler_config == model.config.resampler_config
    assert type(loaded.config.text_config) is type(model.config.text_config)
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    batch = make_batch(cfg, ["T I QQQ"])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)


def test_from_components_loads_local_towers_and_names_missing_paths(tmp_path):
    from transformers import AutoModel, AutoModelForCausalLM

    cfg = tiny_config("llama", "mma")
    ref = build_seeded(cfg, 0)
    ref.vision_tower.save_pretrained(tmp_path / "vision")
    ref.language_model.save_pretrained(tmp_path / "llm")
    model = AkiForConditionalGeneration.from_components(
        tmp_path / "vision", tmp_path / "llm", resampler_config={"num_latents": 16, "depth": 1},
        image_token_id=cfg.image_token_id)
    tower = AutoModel.from_pretrained(tmp_path / "vision")
    llm = AutoModelForCausalLM.from_pretrained(tmp_path / "llm")
    for k, v in tower.state_dict().items():
        assert torch.equal(model.vision_tower.state_dict()[k], v)
    for k, v in llm.state_dict().items():
        assert torch.equal(model.language_model.state_dict()[k], v)
    assert model.config.num_image_tokens == 16
    with pytest.raises(FileNotFoundError, match="no-such-llm"):
        AkiForConditionalGeneration.from_components(tmp_path / "vision", tmp_path / "no-such-llm")


def test_tiny_model_with_processor_runs_end_to_end():
    from PIL import Image

    from aki.testing import tiny_model

    model, processor = tiny_model("phi3", "mma", seed=0)
    model2, _ = tiny_model("phi3", "mma", seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values(),
                                                 strict=True))
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is it?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    batch = processor(text=[prompt, "Hello there"], images=[[image], []], return_tensors="pt")
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape[:2] == batch["input_ids"].shape
    assert bool((batch["segments"] == Segment.QUERY).any())
    tokens = model.generate(**batch, max_new_tokens=4, eos_token_id=processor.eos_token_ids)
    assert tokens.shape[0] == 2 and tokens.shape[1] <= batch["input_ids"].shape[1] + 4
