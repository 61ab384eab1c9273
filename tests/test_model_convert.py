"""The release converter, tested against a tiny checkpoint in the release's exact layout.

Everything the reference computation uses is written here from the facts in
shared/reference/official-aki.md ("Facts confirmed by running the release"), not from any
released code: a 32064-row original embedding and head (Phi-3.5's) with a trained head bias;
``initial_tokenizer_len`` = 32012 (Phi-3.5's 32011 ids plus ``<pad>``); two decoupled rows,
``<image>`` = 32012 and ``<|endofchunk|>`` = 32013; the head cut to its first 32012 columns
before the added columns are appended; ids >= 32012 embedded by ``additional_embedding``; the
LLM with Phi-3.5's longrope rope scaling. Dimensions are small; the vocabulary is real size.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoProcessor,
    Phi3Config,
    Phi3ForCausalLM,
    PreTrainedTokenizerFast,
    SiglipVisionConfig,
    SiglipVisionModel,
)
from typer.testing import CliRunner

from aki.model.convert_official import (
    ConversionError,
    convert_official_checkpoint,
    release_vocabulary,
    vision_config_from_weights,
)
from aki.testing import tiny_vision_config

ORIGINAL_ROWS = 32064  # Phi-3.5's embedding and head
INITIAL_TOKENIZER_LEN = 32012  # Phi-3.5's 32011 ids + <pad> (32011)
ADDED = ("<image>", "<|endofchunk|>")  # 32012, 32013
PHI3_SPECIALS = ("<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>",
                 "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>")
HIDDEN, DIM, LATENTS, DEPTH, HEADS, HEAD_DIM, MULT = 64, 32, 4, 2, 2, 8, 2


def _text_config(longrope: bool = True) -> dict:
    head_half = HIDDEN // 4 // 2  # 4 heads of 16: 8 rotary frequencies
    config = {"model_type": "phi3", "vocab_size": ORIGINAL_ROWS, "hidden_size": HIDDEN, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
              "max_position_embeddings": 4096, "original_max_position_embeddings": 64,
              "bos_token_id": 1, "eos_token_id": 32000, "pad_token_id": 32000, "sliding_window": None,
              "tie_word_embeddings": False, "rms_norm_eps": 1e-5}
    if longrope:
        config["rope_scaling"] = {"type": "longrope", "short_factor": [1.0 + 0.25 * i for i in range(head_half)],
                                  "long_factor": [2.0 + 0.5 * i for i in range(head_half)]}
    return config


def _phi(config: dict) -> Phi3ForCausalLM:
    return Phi3ForCausalLM(Phi3Config(**{k: v for k, v in config.items() if k != "model_type"})).eval()


def _release_tokenizer() -> PreTrainedTokenizerFast:
    """A fast tokenizer with the release's ids: 0..31999 text, Phi-3's control tokens at
    32000..32010, then <pad>, <image>, <|endofchunk|>."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    while len(vocab) < 32000:
        vocab[f"piece{len(vocab)}"] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t in ("<unk>", "<s>", "</s>", *PHI3_SPECIALS, "<pad>", *ADDED)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="<|endoftext|>",
                                   unk_token="<unk>", pad_token="<pad>")


def _release_state_dict(text_config: dict, seed: int = 0):
    torch.manual_seed(seed)
    vision_cfg = {k: v for k, v in tiny_vision_config().items() if k != "model_type"}
    tower = SiglipVisionModel(SiglipVisionConfig(**vision_cfg)).eval()
    llm = _phi(text_config)
    sd = {f"vision_encoder.{k}": v for k, v in tower.state_dict().items()}
    inner = HEADS * HEAD_DIM
    sd["vision_tokenizer.latents"] = torch.randn(LATENTS, DIM)
    for i in range(DEPTH):
        p = f"vision_tokenizer.layers.{i}."
        for n in ("norm_media", "norm_latents"):
            sd[p + f"0.{n}.weight"], sd[p + f"0.{n}.bias"] = 1 + 0.1 * torch.randn(DIM), 0.1 * torch.randn(DIM)
        sd[p + "0.to_q.weight"] = 0.2 * torch.randn(inner, DIM)
        sd[p + "0.to_kv.weight"] = 0.2 * torch.randn(2 * inner, DIM)
        sd[p + "0.to_out.weight"] = 0.2 * torch.randn(DIM, inner)
        sd[p + "1.0.weight"], sd[p + "1.0.bias"] = 1 + 0.1 * torch.randn(DIM), 0.1 * torch.randn(DIM)
        sd[p + "1.1.weight"] = 0.2 * torch.randn(DIM * MULT, DIM)
        sd[p + "1.3.weight"] = 0.2 * torch.randn(DIM, DIM * MULT)
    sd["vision_tokenizer.norm.weight"], sd["vision_tokenizer.norm.bias"] = torch.ones(DIM), torch.zeros(DIM)
    sd["vision_tokenizer.projection.weight"] = 0.2 * torch.randn(HIDDEN, DIM)
    sd["vision_tokenizer.projection.bias"] = 0.1 * torch.randn(HIDDEN)
    for k, v in llm.state_dict().items():
        sd[f"lang_model.{k}"] = v
    sd["lang_model.model.embed_tokens.additional_embedding.weight"] = torch.randn(len(ADDED), HIDDEN)
    sd["lang_model.lm_head.bias"] = torch.randn(ORIGINAL_ROWS)
    sd["lang_model.lm_head.additional_fc.weight"] = 0.1 * torch.randn(len(ADDED), HIDDEN)
    sd["lang_model.lm_head.additional_fc.bias"] = torch.randn(len(ADDED))
    return sd, tower, llm


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A release folder as published: weights, the hub mixin's config.json, tokenizer files."""
    src = tmp_path_factory.mktemp("release")
    sd, tower, llm = _release_state_dict(_text_config())
    save_file({k: v.contiguous() for k, v in sd.items()}, str(src / "model.safetensors"))
    (src / "config.json").write_text(json.dumps({
        "vision_encoder_path": "google/siglip-so400m-patch14-384", "lang_model_path": "microsoft/Phi-3.5-mini-instruct",
        "pad_token_id": 32011, "initial_tokenizer_len": INITIAL_TOKENIZER_LEN, "num_vision_tokens": LATENTS}))
    tokenizer = _release_tokenizer()
    tokenizer.save_pretrained(src)
    (src / "added_tokens.json").write_text(json.dumps({t: tokenizer.convert_tokens_to_ids(t)
                                                       for t in (*PHI3_SPECIALS, "<pad>", *ADDED)}))
    text = tmp_path_factory.mktemp("phi35") / "config.json"
    text.write_text(json.dumps(_text_config()))
    vision = text.parent / "vision.json"  # the tiny tower's heads (so400m's 16 would be read otherwise)
    vision.write_text(json.dumps(tiny_vision_config()))
    return {"src": src, "sd": sd, "tower": tower, "llm": llm, "text": text, "vision": vision}


@pytest.fixture(scope="module")
def converted(release, tmp_path_factory):
    from aki.model import AkiForConditionalGeneration

    dst = tmp_path_factory.mktemp("converted")
    result = CliRunner().invoke(_app(), ["convert-official", str(release["src"]), str(dst), "--text-config",
                                         str(release["text"]), "--vision-config", str(release["vision"]),
                                         "--resampler-head-dim", str(HEAD_DIM)])
    assert result.exit_code == 0, result.output
    assert "32014 ids, <image> = 32012" in result.output
    return dst, AkiForConditionalGeneration.from_pretrained(dst).eval()


def _app():
    from aki.cli.main import app

    return app


def _release_logits(sd, llm, ids: torch.Tensor) -> torch.Tensor:
    """The release's computation, written from the facts: decoupled embedding, the original
    decoder, the biased head cut to initial_tokenizer_len columns, then additional_fc."""
    weight = sd["lang_model.model.embed_tokens.weight"]
    extra = sd["lang_model.model.embed_tokens.additional_embedding.weight"]
    original = ids < INITIAL_TOKENIZER_LEN
    emb = torch.where(original[..., None], F.embedding(ids.clamp(max=INITIAL_TOKENIZER_LEN - 1), weight),
                      F.embedding((ids - INITIAL_TOKENIZER_LEN).clamp(min=0), extra))
    hidden = llm.model(inputs_embeds=emb).last_hidden_state
    head = hidden @ sd["lang_model.lm_head.weight"].T + sd["lang_model.lm_head.bias"]
    added = hidden @ sd["lang_model.lm_head.additional_fc.weight"].T + sd["lang_model.lm_head.additional_fc.bias"]
    return torch.cat([head[..., :INITIAL_TOKENIZER_LEN], added], dim=-1)


def test_vocabulary_is_the_releases(release, converted):
    dst, model = converted
    vocab = release_vocabulary(release["src"], len(ADDED), json.loads((release["src"] / "config.json").read_text()))
    assert (vocab.original_size, vocab.added, vocab.size) == (INITIAL_TOKENIZER_LEN, ADDED, 32014)
    assert model.config.text_config.vocab_size == 32014 and model.config.image_token_id == 32012
    assert model.get_input_embeddings().weight.shape[0] == 32014
    assert model.get_output_embeddings().weight.shape[0] == 32014
    assert model.config.text_config.pad_token_id == 32011
    processor = AutoProcessor.from_pretrained(dst)
    assert processor.image_token_id == 32012 and processor.endofchunk_token_id == 32013
    assert processor.family == "phi3" and processor.num_image_tokens == LATENTS
    assert processor.image_processor.size == {"height": 32, "width": 32}
    assert processor.tokenizer.convert_tokens_to_ids("<pad>") == 32011


def test_converted_logits_equal_the_release_over_every_column(release, converted):
    _, model = converted
    sd, llm = release["sd"], release["llm"]
    ids = torch.tensor([[1, 32006, 5, 17, 400, 32007, 32010, 32011, 31999, 32013, 32001, 9, 32000]])
    with torch.no_grad():
        reference = _release_logits(sd, llm, ids)
        ours = model(input_ids=ids, segments=torch.zeros_like(ids)).logits
    assert ours.shape[-1] == reference.shape[-1] == 32014
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    plain = _phi(_text_config(longrope=False))  # the text config matters: without longrope, other logits
    plain.load_state_dict(llm.state_dict())
    with torch.no_grad():
        assert (_release_logits(sd, plain, ids) - reference).abs().max() > 1e-3


def test_image_features_equal_the_releases_resampler(release, converted):
    _, model = converted
    sd = release["sd"]
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        media = release["tower"](pixel_values=pixels).last_hidden_state
        x = sd["vision_tokenizer.latents"].expand(2, -1, -1)
        for i in range(DEPTH):  # Flamingo's resampler written out from the release's tensors
            p = f"vision_tokenizer.layers.{i}."

            def ln(t, name, p=p):
                return F.layer_norm(t, (DIM,), sd[p + name + ".weight"], sd[p + name + ".bias"])

            m, lat = ln(media, "0.norm_media"), ln(x, "0.norm_latents")
            q = (lat @ sd[p + "0.to_q.weight"].T).view(2, LATENTS, HEADS, HEAD_DIM).transpose(1, 2)
            k, v = (torch.cat([m, lat], 1) @ sd[p + "0.to_kv.weight"].T).chunk(2, -1)
            k, v = (t.view(2, -1, HEADS, HEAD_DIM).transpose(1, 2) for t in (k, v))
            attn = ((q * HEAD_DIM**-0.5) @ k.transpose(-1, -2)).softmax(-1)
            x = x + (attn @ v).transpose(1, 2).reshape(2, LATENTS, -1) @ sd[p + "0.to_out.weight"].T
            x = x + F.gelu(ln(x, "1.0") @ sd[p + "1.1.weight"].T) @ sd[p + "1.3.weight"].T
        x = F.layer_norm(x, (DIM,), sd["vision_tokenizer.norm.weight"], sd["vision_tokenizer.norm.bias"])
        reference = x @ sd["vision_tokenizer.projection.weight"].T + sd["vision_tokenizer.projection.bias"]
        torch.testing.assert_close(model.get_image_features(pixels), reference, atol=1e-5, rtol=1e-5)


def test_refuses_without_a_text_config(release, tmp_path):
    dst = tmp_path / "out"
    result = CliRunner().invoke(_app(), ["convert-official", str(release["src"]), str(dst)])
    assert result.exit_code == 1
    assert "aki convert-official: error: no text config" in result.output
    assert "config.json" in result.output and "microsoft/Phi-3.5-mini-instruct" in result.output
    assert "--text-config" in result.output and not dst.exists()
    missing = CliRunner().invoke(_app(), ["convert-official", str(release["src"]), str(dst), "--text-config",
                                          str(tmp_path / "nope.json")])
    assert missing.exit_code == 1 and "nope.json" in missing.output and not dst.exists()


def test_text_config_found_through_lang_model_path(release, tmp_path):
    """The release's config.json names its LLM; a local folder of that name is read."""
    import shutil

    src = tmp_path / "release"
    shutil.copytree(release["src"], src)
    shutil.copy(release["text"], tmp_path / "phi.json")
    (tmp_path / "Phi-3.5-mini-instruct").mkdir()
    shutil.copy(release["text"], tmp_path / "Phi-3.5-mini-instruct" / "config.json")
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "lang_model_path": str(tmp_path / "Phi-3.5-mini-instruct")}))
    model, processor = convert_official_checkpoint(src, tmp_path / "out", resampler_head_dim=HEAD_DIM)
    assert model.config.text_config.rope_parameters["rope_type"] == "longrope" and processor is not None
    (src / "config.json").write_text(json.dumps({**config, "initial_tokenizer_len": 32011}))
    with pytest.raises(ConversionError, match="disagree"):
        convert_official_checkpoint(src, tmp_path / "out2", text_config=release["text"], resampler_head_dim=HEAD_DIM)


def test_siglip_384_tower_keeps_its_image_size():
    """so400m-patch14-384: 729 positions = 27x27 patches, which 378 pixels would also give."""
    sd = {"vision_encoder.post_layernorm.weight": torch.empty(1152),
          "vision_encoder.embeddings.patch_embedding.weight": torch.empty(1152, 3, 14, 14),
          "vision_encoder.embeddings.position_embedding.weight": torch.empty(729, 1152),
          "vision_encoder.encoder.layers.0.mlp.fc1.weight": torch.empty(4304, 1152),
          **{f"vision_encoder.encoder.layers.{i}.layer_norm1.weight": torch.empty(1) for i in range(27)}}
    vision = vision_config_from_weights(sd)
    assert (vision["image_size"], vision["patch_size"], vision["num_hidden_layers"]) == (384, 14, 27)
    assert vision_config_from_weights(sd, image_size=384)["image_size"] == 384
    with pytest.raises(ConversionError, match="grid"):
        vision_config_from_weights(sd, image_size=448)


def test_unknown_tower_is_refused(release):
    from aki.model.convert_official import find_vision_config

    config = {"vision_encoder_path": "someone/other-siglip"}
    with pytest.raises(ConversionError, match=r"vision_encoder_path='someone/other-siglip'.*--vision-config"):
        find_vision_config(release["src"], config, release["sd"])
    assert find_vision_config(release["src"], config, release["sd"], release["vision"])["num_attention_heads"] == 2


def test_converted_model_stops_at_the_release_end_of_turn(converted):
    """generate() on a converted folder stops where the release's chat turns end, pads with <pad>."""
    from transformers import GenerationConfig

    dst, model = converted
    from aki.processing import AkiProcessor

    saved = GenerationConfig.from_pretrained(dst)

    processor = AkiProcessor.from_pretrained(dst)
    assert set(processor.eos_token_ids) <= set(saved.eos_token_id)
    assert saved.pad_token_id == 32011
    assert processor.image_token_id in model.generation_config.suppress_tokens
