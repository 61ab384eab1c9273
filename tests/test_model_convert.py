"""The official-checkpoint converter: every key lands, logits equal the official computation."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, Phi3Config, SiglipVisionConfig, SiglipVisionModel

from aki.model.convert_official import convert_official_state_dict, official_config
from aki.testing import tiny_text_config, tiny_vision_config

V, EXTRA = 96, 2  # original vocab, decoupled additional tokens
DIM, LATENTS, DEPTH, HEADS, HEAD_DIM, MULT = 32, 4, 2, 2, 8, 2


def _official_state_dict(seed: int = 0):
    """A tiny state dict in the official AKI layout (Phi-3 LLM), plus the modules it came from."""
    torch.manual_seed(seed)
    vision_cfg = {k: v for k, v in tiny_vision_config().items() if k != "model_type"}
    tower = SiglipVisionModel(SiglipVisionConfig(**vision_cfg)).eval()
    text_cfg = tiny_text_config("phi3", V)
    llm = AutoModelForCausalLM.from_config(Phi3Config(**{k: v for k, v in text_cfg.items() if k != "model_type"}))
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
    sd["vision_tokenizer.projection.weight"] = 0.2 * torch.randn(64, DIM)
    sd["vision_tokenizer.projection.bias"] = 0.1 * torch.randn(64)
    for k, v in llm.state_dict().items():
        sd[f"lang_model.{k}"] = v
    sd["lang_model.model.embed_tokens.additional_embedding.weight"] = torch.randn(EXTRA, 64)
    sd["lang_model.lm_head.bias"] = torch.randn(V)
    sd["lang_model.lm_head.additional_fc.weight"] = 0.1 * torch.randn(EXTRA, 64)
    sd["lang_model.lm_head.additional_fc.bias"] = torch.randn(EXTRA)
    return sd, tower, llm, text_cfg


def _official_resampler(sd, media):
    """Flamingo's resampler written out from the official tensors (max-subtracted softmax)."""
    x = sd["vision_tokenizer.latents"].expand(media.shape[0], -1, -1)
    for i in range(DEPTH):
        p = f"vision_tokenizer.layers.{i}."

        def ln(t, name, p=p):
            return F.layer_norm(t, (DIM,), sd[p + name + ".weight"], sd[p + name + ".bias"])

        m, lat = ln(media, "0.norm_media"), ln(x, "0.norm_latents")
        q = lat @ sd[p + "0.to_q.weight"].T
        k, v = (torch.cat([m, lat], 1) @ sd[p + "0.to_kv.weight"].T).chunk(2, -1)

        def heads(t):
            return t.view(t.shape[0], t.shape[1], HEADS, HEAD_DIM).transpose(1, 2)

        sim = (heads(q) * HEAD_DIM**-0.5) @ heads(k).transpose(-1, -2)
        attn = (sim - sim.amax(-1, keepdim=True)).softmax(-1)
        out = (attn @ heads(v)).transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        x = x + out @ sd[p + "0.to_out.weight"].T
        h = ln(x, "1.0") @ sd[p + "1.1.weight"].T
        x = x + F.gelu(h) @ sd[p + "1.3.weight"].T
    x = F.layer_norm(x, (DIM,), sd["vision_tokenizer.norm.weight"], sd["vision_tokenizer.norm.bias"])
    return x @ sd["vision_tokenizer.projection.weight"].T + sd["vision_tokenizer.projection.bias"]


def _converted(sd, text_cfg, extra_ids=None):
    from aki.model import AkiForConditionalGeneration

    config = official_config(sd, text_config=text_cfg, vision_config=tiny_vision_config(), image_token_id=50, resampler_head_dim=HEAD_DIM,
                             attention_rule="causal")
    model = AkiForConditionalGeneration(config).eval()
    converted = convert_official_state_dict(sd, extra_ids)
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model, converted


def test_every_official_key_lands_and_shapes_fit():
    sd, *_, text_cfg = _official_state_dict()
    model, converted = _converted(sd, text_cfg)
    assert set(converted) == set(model.state_dict())
    merged = {"lang_model.model.embed_tokens.additional_embedding.weight", "lang_model.lm_head.bias",
              "lang_model.lm_head.additional_fc.weight", "lang_model.lm_head.additional_fc.bias",
              "lang_model.model.embed_tokens.weight", "lang_model.lm_head.weight"}
    values = list(converted.values())
    for key, tensor in sd.items():
        if key not in merged:  # every other official tensor appears unchanged under its new name
            assert any(v.shape == tensor.shape and torch.equal(v, tensor) for v in values), key
    assert model.config.lm_head_bias and model.config.text_config.vocab_size == V + EXTRA
    assert model.config.resampler_config.num_latents == LATENTS and model.config.resampler_config.depth == DEPTH


def test_converted_logits_equal_the_official_computation():
    sd, tower, llm, text_cfg = _official_state_dict()
    extra_ids = [V - 2, V - 1]  # official: ids above max_original_id use additional_embedding
    model, _ = _converted(sd, text_cfg, extra_ids)
    ids = torch.tensor([[1, 5, 17, 40, V - 3, V - 1, 9, V - 2]])
    with torch.no_grad():
        # official decoupled embedding, then the original Phi-3 decoder
        emb = F.embedding(ids.clamp(max=V - 3), sd["lang_model.model.embed_tokens.weight"])
        add = sd["lang_model.model.embed_tokens.additional_embedding.weight"]
        for row, tid in enumerate(extra_ids):
            emb[ids == tid] = add[row]
        hidden = llm.model(inputs_embeds=emb).last_hidden_state
        official = torch.cat([
            hidden @ sd["lang_model.lm_head.weight"].T + sd["lang_model.lm_head.bias"],
            hidden @ sd["lang_model.lm_head.additional_fc.weight"].T + sd["lang_model.lm_head.additional_fc.bias"],
        ], dim=-1)
        ours = model(input_ids=ids).logits
    assert ours.shape[-1] == V + EXTRA
    torch.testing.assert_close(ours, official, atol=1e-5, rtol=1e-5)

    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        media = tower(pixel_values=pixels).last_hidden_state
        torch.testing.assert_close(model.get_image_features(pixels), _official_resampler(sd, media),
                                   atol=1e-5, rtol=1e-5)


def test_cli_converts_a_directory(tmp_path):
    from safetensors.torch import save_file
    from typer.testing import CliRunner

    from aki.cli.main import app
    from aki.model import AkiForConditionalGeneration

    sd, _, _, text_cfg = _official_state_dict()
    src, dst = tmp_path / "official", tmp_path / "converted"
    src.mkdir()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(src / "model.safetensors"))
    (src / "added_tokens.json").write_text(json.dumps({"<image>": V - 2, "<|endofchunk|>": V - 1}))
    (tmp_path / "text.json").write_text(json.dumps(text_cfg))
    vision_cfg = {**tiny_vision_config()}
    (tmp_path / "vision.json").write_text(json.dumps(vision_cfg))
    result = CliRunner().invoke(app, ["convert-official", str(src), str(dst), "--text-config",
                                      str(tmp_path / "text.json"), "--vision-config", str(tmp_path / "vision.json"),
                                      "--resampler-head-dim", str(HEAD_DIM)])
    assert result.exit_code == 0, result.output
    assert (dst / "added_tokens.json").exists()
    model = AkiForConditionalGeneration.from_pretrained(dst)
    assert model.config.image_token_id == V - 2
    emb = model.get_input_embeddings().weight
    torch.testing.assert_close(emb[V - 1], sd["lang_model.model.embed_tokens.additional_embedding.weight"][1])
    torch.testing.assert_close(emb[V + 1], sd["lang_model.model.embed_tokens.additional_embedding.weight"][1])
    missing = CliRunner().invoke(app, ["convert-official", str(tmp_path / "nope"), str(dst)])
    assert missing.exit_code == 1 and "nope" in missing.output
