"""The AKI model: image splicing, the rules reaching the decoder, backends, the loss, save/load, parts."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

from aki.masks import RULE_NAMES, Segment, build_attention_mask
from aki.model import AkiConfig, AkiForConditionalGeneration, next_token_loss
from aki.testing import (
    BACKBONES,
    build_seeded,
    make_batch,
    tiny_config,
    tiny_text_config,
)

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


def test_loss_at_trained_positions_equals_full_logits_cross_entropy():
    cfg = tiny_config("llama", "mma")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, ["T I QQ AAA", "TT QQQ AA"], padding="right")
    labels = torch.where(batch["segments"] == Segment.ANSWER, batch["input_ids"], -100)
    out = model(**batch, labels=labels, output_hidden_states=True)
    assert out.logits is None  # the head ran at the trained positions only
    B, L = batch["input_ids"].shape
    assert len(out.hidden_states) == cfg.text_config.num_hidden_layers + 1
    assert all(h.shape == (B, L, cfg.text_config.hidden_size) for h in out.hidden_states)
    full = model(**batch).logits
    assert full.shape == (B, L, cfg.text_config.vocab_size)
    logits, tgt = full[:, :-1], labels[:, 1:]
    keep = tgt != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], tgt[keep], reduction="sum")
    torch.testing.assert_close(out.loss, expected / keep.sum())
    # num_items_in_batch replaces the count (gradient accumulation over micro-batches / ranks)
    torch.testing.assert_close(model(**batch, labels=labels, num_items_in_batch=7).loss, expected / 7)
    torch.testing.assert_close(model(**batch, labels=labels, num_items_in_batch=torch.tensor(7.0)).loss,
                               expected / 7)
    out.loss.backward()
    assert model.resampler.latents.grad is not None
    assert all(p.grad is None for p in model.vision_tower.parameters())  # frozen
    nothing = torch.full_like(labels, -100)
    assert float(model(**batch, labels=nothing).loss) == 0.0


def test_chunked_loss_equals_one_piece_with_gradients():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=True)
    hidden = torch.randn(3, 9, 8, requires_grad=True)
    labels = torch.randint(0, 50, (3, 9))
    labels[0, :4] = -100
    labels[2, 5:] = -100
    grads = []
    losses = []
    for chunk in (10**9, 50 * 3):  # one piece; 3 positions per chunk (checkpointed)
        hidden.grad, head.weight.grad = None, None
        loss = next_token_loss(hidden, labels, head, chunk_logits=chunk, num_items_in_batch=5)
        loss.backward()
        losses.append(loss.detach())
        grads.append((hidden.grad.clone(), head.weight.grad.clone()))
    torch.testing.assert_close(losses[0], losses[1])
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(a, b)


def test_image_features_are_spliced_at_image_tokens():
    cfg = tiny_config("qwen2", "causal")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, ["T I T I Q"])
    feats = model.get_image_features(batch["pixel_values"])
    assert feats.shape == (2, cfg.num_image_tokens, cfg.text_config.hidden_size)
    wrapped = model.get_image_features(batch["pixel_values"], return_dict=True)
    assert torch.equal(wrapped.pooler_output, feats)
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


def _capture_decoder_masks(model):
    seen = []
    hook = model.get_decoder().register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs.get("attention_mask")), with_kwargs=True)
    return seen, hook


@pytest.mark.parametrize("backbone", ["llama", "qwen3"])
def test_causal_rules_take_the_llm_native_path(backbone):
    """causal and mma@0 hand the LLM no mask when no real token follows padding (SDPA is_causal),
    its 2D mask with left padding, and give what the explicit rule mask gives."""
    mma = build_seeded(tiny_config(backbone, "mma"), 0)
    zero = build_seeded(tiny_config(backbone, "mma", rule_options={"unlock_fraction": 0.0}), 0)
    seen, hook = _capture_decoder_masks(zero)
    right = make_batch(zero.config, ["TT I QQQ A", "T I QQQQQQ AA"], padding="right")
    left = make_batch(zero.config, ["TT I QQQ A", "T I QQQQQQ AA"], padding="left")
    with torch.no_grad():
        for batch in (right, left):
            valid = batch["attention_mask"].bool()
            native = zero(**batch).logits
            explicit = build_attention_mask(batch["segments"], "causal")
            ref = mma.language_model(inputs_embeds=mma.embed(batch["input_ids"], batch["pixel_values"]),
                                     attention_mask=explicit, position_ids=zero.prompt_position_ids(
                                         batch["input_ids"], batch["attention_mask"], batch["segments"])).logits
            torch.testing.assert_close(native[valid], ref[valid], atol=1e-5, rtol=1e-4)
    hook.remove()
    assert seen[0] is None
    assert seen[1].dim() == 2 and torch.equal(seen[1], left["attention_mask"])


def _three_backends(rule: str, flex: bool):
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
        if flex:  # compiled on CPU: ~10-30 s per rule
            model.set_attn_implementation("flex_attention")
            flex_logits = model(**batch).logits
            torch.testing.assert_close(sdpa[valid], flex_logits[valid], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_sdpa_and_eager_give_the_same_logits(rule):
    _three_backends(rule, flex=rule == "mma")  # short form: flex for MMA only


@pytest.mark.slow
@pytest.mark.parametrize("rule", [r for r in RULE_NAMES if r != "mma"])
def test_flex_gives_the_same_logits_for_every_rule(rule):
    _three_backends(rule, flex=True)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_left_padding_does_not_change_a_row_and_pad_rows_stay_finite(implementation, dtype):
    cfg = tiny_config("qwen3", "mma")
    model = build_seeded(cfg, 0, implementation).to(dtype)
    batch = make_batch(cfg, ["TT I QQQ", "T I QQQQQQQQ"])
    single = make_batch(cfg, ["TT I QQQ"])
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
        padded = out.logits[0][batch["attention_mask"][0].bool()]
        alone = model(**{**single, "pixel_values": batch["pixel_values"][:1]}).logits[0]
    assert all(h.isfinite().all() for h in out.hidden_states)  # fully masked PAD rows: no NaN
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(padded, alone, atol=tol, rtol=tol)


def test_packed_documents_read_like_separate_rows():
    cfg = tiny_config("llama", "mma")
    model = build_seeded(cfg, 0)
    packed = make_batch(cfg, ["TT I QQQ AA" + "T I QQ A"])
    n = len("TTQQQAA") + cfg.num_image_tokens
    docs = torch.tensor([[0] * n + [1] * (packed["input_ids"].shape[1] - n)])
    first = {k: (v[:, :n] if k != "pixel_values" else v[:1]) for k, v in packed.items()}
    second = {k: (v[:, n:] if k != "pixel_values" else v[1:]) for k, v in packed.items()}
    with torch.no_grad():
        together = model(**packed, document_ids=docs).logits[0]
        apart = torch.cat([model(**first).logits[0], model(**second).logits[0]])
    torch.testing.assert_close(together, apart, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backbone", ["phi3", "qwen2"])
def test_sliding_window_reaches_the_decoder_with_a_rule_mask(backbone):
    """A prepared mask bypasses the backbone's window: the model adds it (Phi-3: every layer;
    Qwen: the sliding layers of layer_types). A text-only prompt read under mma-general (no
    images: exactly causal, through aki's mask) equals the causal rule (the LLM's own window)."""
    window = {"sliding_window": 6}
    if backbone == "qwen2":
        window.update(use_sliding_window=True, max_window_layers=1)
    text = {**tiny_text_config(backbone, 512), **window}
    general = build_seeded(tiny_config(backbone, "mma-general", text_config=text), 0)
    causal = build_seeded(tiny_config(backbone, "causal", text_config=dict(text)), 0)
    no_window = build_seeded(tiny_config(backbone, "causal", text_config=tiny_text_config(backbone, 512)), 0)
    batch = make_batch(general.config, ["TTTTTTTTQQQQQQ", "TTTQQQQQQQQQQQ"])
    valid = batch["attention_mask"].bool()
    with torch.no_grad():
        a, b, c = (m(**batch).logits for m in (general, causal, no_window))
    torch.testing.assert_close(a[valid], b[valid], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(a[valid], c[valid], atol=1e-4)  # the window matters here


def _stable(d):
    """A config dict without what loading legitimately fills in (source path, version)."""
    if isinstance(d, dict):
        return {k: _stable(v) for k, v in d.items() if k not in ("_name_or_path", "transformers_version")}
    return d


def test_save_and_load_round_trip_through_the_auto_classes(tmp_path):
    cfg = tiny_config("phi3", "cca", lm_head_bias=True, rule_options={"grid": [4, 4]})
    model = build_seeded(cfg, 3)
    with torch.no_grad():
        model.language_model.lm_head.bias.normal_()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AkiForConditionalGeneration.from_pretrained(tmp_path).eval()
    auto = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(auto) is AkiForConditionalGeneration
    assert isinstance(AutoConfig.from_pretrained(tmp_path), AkiConfig)
    assert _stable(loaded.config.to_dict()) == _stable(model.config.to_dict())
    assert loaded.config.rule_options == {"grid": [4, 4]}
    assert loaded.config.resampler_config == model.config.resampler_config
    assert type(loaded.config.text_config) is type(model.config.text_config)
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    batch = make_batch(cfg, ["T I QQQ"])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
        assert torch.equal(model(**batch).logits, auto(**batch).logits)


def test_old_configs_load_their_rule_options_and_bad_options_fail_early():
    assert tiny_config("llama", "mma", unlock_fraction=0.3).rule_options == {"unlock_fraction": 0.3}
    assert tiny_config("llama", "cca", cca_grid=[4, 4]).rule_options == {"grid": [4, 4]}
    legacy = tiny_config("llama", "mma", unlock_fraction=None, cca_grid=None)
    assert legacy.rule_options == {}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tiny_config("llama", "mma", rule_options={"unlock_fraction": 2})
    with pytest.raises(ValueError, match="takes no option"):
        tiny_config("llama", "causal", rule_options={"unlock_fraction": 0.5})
    with pytest.raises(ValueError, match="attention_rule must be one of"):
        tiny_config("llama", "full")
    cfg = tiny_config("llama", "mma")
    cfg.set_rule("cca", {"grid": [4, 4]})
    assert cfg.attention_rule == "cca" and cfg.rule.name == "cca"


def _plain_tokenizer():
    """A llama3-family tokenizer without aki's tokens (as a downloaded LLM's would be)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from aki.processing import BUILTIN_CORPUS, FAMILIES, get_chat_template

    spec = FAMILIES["llama3"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(BUILTIN_CORPUS, trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=[AddedToken(t, special=True) for t in spec.specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=spec.bos, eos_token=spec.eos,
                                   chat_template=get_chat_template("llama3"))


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_from_components_adds_the_image_token_and_keeps_one_dtype(tmp_path, dtype):
    from PIL import Image

    tok = _plain_tokenizer()
    vocab = len(tok)
    llm = AutoModelForCausalLM.from_config(AutoConfig.for_model(**tiny_text_config("llama", vocab)))
    llm.to(torch.bfloat16).save_pretrained(tmp_path / "llm")  # saved in bf16, as released LLMs are
    tok.save_pretrained(tmp_path / "llm")
    tower = build_seeded(tiny_config("llama", "mma"), 0).vision_tower
    tower.save_pretrained(tmp_path / "vision")

    model, processor = AkiForConditionalGeneration.from_components(
        tmp_path / "vision", tmp_path / "llm", resampler_config={"num_latents": 16, "depth": 1},
        dtype=dtype, save_directory=tmp_path / "aki")
    want = dtype or torch.float32
    assert {p.dtype for p in model.parameters()} == {want} and model.dtype == want
    named = str(want).removeprefix("torch.")  # save_pretrained writes the dtype's name into the config
    assert {str(c.dtype).removeprefix("torch.") for c in (model.config, model.config.text_config,
                                                          model.config.vision_config)} == {named}
    image_id = processor.image_token_id
    assert image_id == model.config.image_token_id and image_id >= vocab  # a new id, never a reused one
    assert model.get_input_embeddings().num_embeddings == len(processor.tokenizer) > vocab
    assert image_id in model.generation_config.suppress_tokens
    assert model.generation_config.eos_token_id == processor.eos_token_ids
    for k, v in tower.state_dict().items():
        assert torch.equal(model.vision_tower.state_dict()[k], v.to(want))
    for name in ("lm_head.weight", "model.embed_tokens.weight"):  # grown by the new tokens' rows
        assert torch.equal(model.language_model.state_dict()[name][:vocab], llm.state_dict()[name].to(want))

    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}])
    batch = processor(text=[prompt], images=[[Image.new("RGB", (40, 30), "red")]])
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "aki")
    assert loaded.dtype == want
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)  # a round trip moves nothing
    out = loaded.generate(**batch, max_new_tokens=3)
    assert out.shape[1] <= batch["input_ids"].shape[1] + 3

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
    tokens = model.generate(**batch, max_new_tokens=4)
    assert tokens.shape[0] == 2 and tokens.shape[1] <= batch["input_ids"].shape[1] + 4
