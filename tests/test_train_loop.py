"""Tiny end-to-end runs: PT and SFT losses fall, exact resume, guard, packing, DOT, bad data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from aki.data import BadRecord, Sample
from aki.data.batching import collate, encode_sample, pack
from aki.masks import LeakageError, Segment
from aki.training import SkipRateError, load_config, train
from aki.training import checkpoint as ckpt
from aki.training.config import ConfigError
from aki.training.trainer import summed_loss


@pytest.fixture(scope="module")
def synth(synth_train) -> Path:
    return synth_train(40)


def pt_cfg(synth: Path, out: Path, **over):
    raw = {
        "output_dir": str(out), "stage": "pt", "max_steps": 8, "seed": 0, "init": {"tiny": "llama"},
        "data": {"sources": [{"format": "pt_shards", "path": str(synth / "train" / "pt-*.tar")}]},
        "batch_size": 4, "max_length": 64, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2,
        "log_every": 1, "save_every": 4, "keep_last_k": 2, "progress": False, "tensorboard": False,
    }
    raw.update(over)
    return load_config(raw=raw)


def sft_cfg(synth: Path, out: Path, **over):
    raw = {
        "output_dir": str(out), "stage": "sft", "max_steps": 8, "seed": 0, "init": {"tiny": "llama"},
        "data": {"sources": [{"format": "sft_llava", "path": str(synth / "train" / "sft.jsonl")}]},
        "batch_size": 4, "max_length": 128, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2,
        "log_every": 1, "save_every": 4, "progress": False, "tensorboard": False,
    }
    raw.update(over)
    return load_config(raw=raw)


def metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_tiny_pt_then_sft_losses_fall(synth, tmp_path):
    pt = train(pt_cfg(synth, tmp_path / "pt", max_steps=12, tensorboard=True))
    assert pt["losses"][-1] < pt["losses"][0] - 0.3
    rows = metrics(tmp_path / "pt")
    assert [r["step"] for r in rows] == list(range(1, 13))
    for key in ("loss", "lr", "tokens_per_s", "non_pad_fraction", "skipped", "skip_rate", "records"):
        assert key in rows[0]
    assert abs(rows[0]["lr"] - 3e-4) < 1e-12  # warm-up starts at min_lr
    assert any((tmp_path / "pt" / "tensorboard").iterdir())
    assert (tmp_path / "pt" / "final" / "config.json").exists()

    sft = train(sft_cfg(synth, tmp_path / "sft", max_steps=10, init={"from_dir": str(tmp_path / "pt")}))
    assert sft["losses"][-1] < sft["losses"][0]
    from aki.model import AkiForConditionalGeneration

    model = AkiForConditionalGeneration.from_pretrained(tmp_path / "sft" / "final")
    assert model.config.attention_rule == "mma"


def test_resume_is_exact_and_crash_during_save_keeps_last_checkpoint(synth, tmp_path, monkeypatch):
    full = train(pt_cfg(synth, tmp_path / "full", max_steps=8, save_every=3))["losses"]

    real_save = ckpt.save_checkpoint

    def crash_after_step_3(*args, **kwargs):
        path = real_save(*args, **kwargs)
        if args[1] == 3:
            raise KeyboardInterrupt("simulated crash")
        return path

    monkeypatch.setattr(ckpt, "save_checkpoint", crash_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(pt_cfg(synth, tmp_path / "cut", max_steps=8, save_every=3))
    # a crash in the middle of the next save (step 6: shards written, not yet renamed) leaves step 3
    # as the latest checkpoint
    real_dcp_save = ckpt.dcp.save

    def crash_in_shard_save(state, checkpoint_id, **kw):
        real_dcp_save(state, checkpoint_id=checkpoint_id, **kw)
        if ".tmp-step-00000006" in str(checkpoint_id):
            raise KeyboardInterrupt("crash while saving")

    monkeypatch.setattr(ckpt, "save_checkpoint", real_save)
    monkeypatch.setattr(ckpt.dcp, "save", crash_in_shard_save)
    with pytest.raises(KeyboardInterrupt):
        train(pt_cfg(synth, tmp_path / "cut", max_steps=8, save_every=3), resume=True)
    assert ckpt.latest_checkpoint(tmp_path / "cut").name == "step-00000003"
    assert list((tmp_path / "cut" / "checkpoints").glob(".tmp-step-00000006"))  # the broken one is left aside
    monkeypatch.setattr(ckpt.dcp, "save", real_dcp_save)

    resumed = train(pt_cfg(synth, tmp_path / "cut", max_steps=8, save_every=3), resume=True)["losses"]
    assert resumed == full[3:]  # bit-exact
    assert [r["step"] for r in metrics(tmp_path / "cut")] == list(range(1, 9))  # redone rows not doubled
    assert [r["loss"] for r in metrics(tmp_path / "cut")] == full
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "cut")]
    assert names == ["step-00000006", "step-00000008"]  # keep_last_k=2, no temp folders listed
    assert not list((tmp_path / "cut" / "checkpoints").glob(".tmp-*"))


def test_refuses_to_overwrite_a_run(synth, tmp_path):
    train(pt_cfg(synth, tmp_path / "r", max_steps=1))
    with pytest.raises(ConfigError, match="--resume"):
        train(pt_cfg(synth, tmp_path / "r", max_steps=1))
    train(pt_cfg(synth, tmp_path / "r", max_steps=1), overwrite=True)


def test_leakage_guard_refuses_unsafe_configs(synth, tmp_path):
    with pytest.raises(LeakageError, match=r"refusing to train.*caption_segment='query'"):
        train(pt_cfg(synth, tmp_path / "a", attention_rule="mma", caption_segment="query"))
    with pytest.raises(LeakageError, match="loss_on='all'"):
        train(sft_cfg(synth, tmp_path / "b", loss_on="all"))
    assert not (tmp_path / "a" / "checkpoints").exists()
    # captions labelled as answers are safe even under MMA (nothing to unlock in PT)
    train(pt_cfg(synth, tmp_path / "c", attention_rule="mma", max_steps=1))


def test_dot_trains_t_and_i_then_i_and_t(synth, tmp_path):
    train(sft_cfg(synth, tmp_path / "dot", order="dot", max_steps=4))
    assert [r["order"] for r in metrics(tmp_path / "dot")] == ["T&I", "T&I", "I&T", "I&T"]


def test_order_changes_the_layout(synth):
    from aki.testing import tiny_processor

    cfg = sft_cfg(synth, synth / "unused")
    from aki.training.pipeline import build_sources

    src = build_sources(cfg)[0][0]
    proc = tiny_processor("llama")
    it = encode_sample(proc, src[0], order="I&T", max_length=128)
    ti = encode_sample(proc, src[0], order="T&I", max_length=128)
    first_img = lambda e: int((e.segments == Segment.IMAGE).nonzero()[0])  # noqa: E731
    assert first_img(ti) > first_img(it)
    assert bool((it.segments == Segment.QUERY).any())


def test_packing_gives_the_same_loss_and_fewer_pads(synth):
    from aki.testing import tiny_model

    model, proc = tiny_model("llama", rule="mma", seed=0)
    cfg = sft_cfg(synth, synth / "unused")
    from aki.training.pipeline import build_sources

    src = build_sources(cfg)[0][0]
    items = [encode_sample(proc, src[i], max_length=128) for i in range(12)]
    lens = sorted(len(e) for e in items)
    unpacked = collate(items, proc.pad_token_id)
    packed = pack(items, 3 * lens[-1], proc.pad_token_id)
    assert packed["input_ids"].shape[0] < len(items)
    assert packed["attention_mask"].float().mean() > unpacked["attention_mask"].float().mean()
    with torch.no_grad():
        a = summed_loss(model, unpacked, None, torch.device("cpu"))
        b = summed_loss(model, packed, None, torch.device("cpu"))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_packed_run_reports_non_pad_fraction(synth, tmp_path):
    train(sft_cfg(synth, tmp_path / "p", max_steps=2, data={
        "packing": True, "sources": [{"format": "sft_llava", "path": str(synth / "train" / "sft.jsonl")}]}))
    rows = metrics(tmp_path / "p")
    assert rows[0]["packing"] is True and 0.95 <= rows[0]["non_pad_fraction"] <= 1.0


def _broken_pt(tmp_path: Path, synth: Path, n_bad: int, n: int = 30) -> Path:
    lines = []
    for k, rec in enumerate(json.loads("[" + ",".join((synth / "train" / "pt.jsonl").read_text().split("\n")[:-1]) + "]")[:n]):
        rec["image"] = str(synth / "train" / rec["image"])
        if k < n_bad:
            rec["image"] = str(tmp_path / f"bad{k}.png")
            Path(rec["image"]).write_bytes(b"\x89PNG broken")
        lines.append(json.dumps(rec))
    lines.append("{malformed")
    (tmp_path / "pt.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "pt.jsonl"


def test_bad_records_are_skipped_and_counted(synth, tmp_path):
    path = _broken_pt(tmp_path, synth, n_bad=1)
    data = {"sources": [{"format": "pt_jsonl", "path": str(path)}]}
    out = train(pt_cfg(synth, tmp_path / "run", max_steps=6, data=data, max_skip_rate=0.2))
    assert out["skipped"] and sum(out["skipped"].values()) >= 1
    last = metrics(tmp_path / "run")[-1]
    assert last["skipped"] >= 1 and last["skipped"] == sum(v for k, v in last.items() if k.startswith("skipped_"))
    assert last["skipped_corrupt_image"] >= 1


def test_skip_rate_threshold_stops_the_run(synth, tmp_path):
    path = _broken_pt(tmp_path, synth, n_bad=12)
    data = {"sources": [{"format": "pt_jsonl", "path": str(path)}]}
    with pytest.raises(SkipRateError, match="max_skip_rate"):
        train(pt_cfg(synth, tmp_path / "run", max_steps=8, data=data))


def test_prompt_too_long_is_a_bad_record(synth):
    from aki.testing import tiny_processor

    proc = tiny_processor("llama")
    from PIL import Image

    s = Sample(images=[Image.new("RGB", (8, 8))], messages=[
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "word " * 300}]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}])
    with pytest.raises(BadRecord) as err:
        encode_sample(proc, s, max_length=64)
    assert err.value.reason == "too_long"


def test_synth_preset_generates_missing_data(tmp_path):
    cfg = load_config("configs/tiny-pretrain.yaml", [
        f"output_dir={tmp_path / 'out'}", f"data.synth_dir={tmp_path / 'syn'}", "data.synth_scenes=12",
        f"data.sources=[{{format: pt_shards, path: '{tmp_path / 'syn' / 'train' / 'pt-*.tar'}'}}]",
        "max_steps=1", "batch_size=2", "progress=false", "tensorboard=false"])
    train(cfg)
    assert (tmp_path / "syn" / "metadata.json").exists()
    shutil.rmtree(tmp_path / "syn")


def test_init_from_vision_and_llm_components(synth, tmp_path):
    """``init: {vision, llm}`` builds a fresh AKI model from saved component folders (offline)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from aki.testing import tiny_processor, tiny_text_config, tiny_vision_config

    tok = tiny_processor("llama").tokenizer
    vis_cfg = tiny_vision_config()
    AutoModel.from_config(AutoConfig.for_model(**vis_cfg)).save_pretrained(tmp_path / "vision")
    text = tiny_text_config("llama", len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                            pad_token_id=tok.pad_token_id)
    AutoModelForCausalLM.from_config(AutoConfig.for_model(**text)).to(torch.bfloat16).save_pretrained(tmp_path / "llm")
    tok.save_pretrained(tmp_path / "llm")
    out = train(pt_cfg(synth, tmp_path / "run", max_steps=2, batch_size=2,
                       init={"vision": str(tmp_path / "vision"), "llm": str(tmp_path / "llm")}))
    assert out["steps"] == 2 and (tmp_path / "run" / "final" / "processor_config.json").exists()
    # one honest dtype: the components were saved in bf16, the run trains and saves fp32 weights
    from aki.model import AkiForConditionalGeneration

    final = AkiForConditionalGeneration.from_pretrained(tmp_path / "run" / "final")
    assert {p.dtype for p in final.parameters()} == {torch.float32}
    assert json.loads((tmp_path / "run" / "final" / "config.json").read_text())["dtype"] == "float32"


def test_resume_when_some_parameters_never_had_a_gradient(synth, tmp_path, monkeypatch):
    """Text-only SFT never reaches the resampler, so AdamW has no state for it at the checkpoint;
    resuming restores that optimizer as it was (a warning names the parameters) and is bit-exact."""
    text_only = tmp_path / "text.jsonl"
    with open(synth / "train" / "sft.jsonl") as src, open(text_only, "w") as dst:
        for line in src:
            rec = json.loads(line)
            rec.pop("image")
            for turn in rec["conversations"]:
                turn["value"] = turn["value"].replace("<image>", "").strip()
            dst.write(json.dumps(rec) + "\n")
    data = {"sources": [{"format": "sft_llava", "path": str(text_only)}]}
    full = train(sft_cfg(synth, tmp_path / "full", max_steps=6, save_every=3, data=data))["losses"]

    real_save = ckpt.save_checkpoint

    def crash_after_step_3(*args, **kwargs):
        path = real_save(*args, **kwargs)
        if args[1] == 3:
            raise KeyboardInterrupt("simulated crash")
        return path

    monkeypatch.setattr(ckpt, "save_checkpoint", crash_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(sft_cfg(synth, tmp_path / "cut", max_steps=6, save_every=3, data=data))
    monkeypatch.setattr(ckpt, "save_checkpoint", real_save)
    with pytest.warns(UserWarning, match=r"no optimizer state for \d+ parameter\(s\) \(resampler\."):
        resumed = train(sft_cfg(synth, tmp_path / "cut", max_steps=6, save_every=3, data=data), resume=True)
    assert resumed["losses"] == full[3:]  # bit-exact
