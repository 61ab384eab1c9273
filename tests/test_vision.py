"""The vision tower stage: dense targets checked against a pixel-by-pixel reference, tower data
determinism and disjointness, the tower stage improving the probes over an untrained tower (short
run), a deterministic tower for a seed, and the tower plugged into the tiny VLM frozen."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from aki.cli.main import app
from aki.data.synth.scenes import COLOURS, SHAPES, SIZES, sample_scene, scene_seed, shape_mask
from aki.vision.data import make_tower_data
from aki.vision.labels import HEADS, MIN_PIXELS_FRACTION, patch_targets
from aki.vision.pretrain import VisionPretrainConfig, pretrain_vision

PATCH = 8


def _reference_counts(ann: dict, patch: int) -> dict[str, np.ndarray]:
    """Per-patch class counts, pixel by pixel from the annotation (no vectorised code)."""
    size = ann["image_size"]
    objs = sorted(ann["objects"], key=lambda o: o["draw_order"])
    masks = [shape_mask(o["shape"], o["bbox"][0], o["bbox"][1], o["bbox"][2] - o["bbox"][0], size)
             for o in objs]
    g = size // patch
    hides = {o["id"]: False for o in objs}
    hidden = {o["id"]: False for o in objs}
    area = {o["id"]: o["area"] for o in objs}
    for front, back, px in ann["occlusions"]:
        if px >= 0.05 * area[back]:
            hides[front] = hidden[back] = True

    def cls(o: dict, head: str) -> int:
        same = lambda keys: sum(all(p[k] == o[k] for k in keys) for p in objs) - 1  # noqa: E731
        return {
            "colour": list(COLOURS).index(o["colour"]), "shape": list(SHAPES).index(o["shape"]),
            "size": list(SIZES).index(o["size"]), "hides": int(hides[o["id"]]),
            "hidden": int(hidden[o["id"]]), "name_count": same(("colour", "shape")),
            "colour_count": same(("colour",)), "shape_count": same(("shape",)),
        }[head]

    out = {h: np.zeros((g * g, n), dtype=np.int64) for h, n in HEADS.items()}
    for y in range(size):
        for x in range(size):
            stack = [o for o, m in zip(objs, masks, strict=True) if m[y, x]]  # far to near
            if not stack:
                continue
            p = (y // patch) * g + x // patch
            for h in HEADS:
                if h.startswith("under_"):
                    if len(stack) >= 2:
                        out[h][p, cls(stack[-2], h.removeprefix("under_"))] += 1
                else:
                    out[h][p, cls(stack[-1], h)] += 1
    return out


@pytest.mark.parametrize("index", [0, 1, 2])
def test_patch_targets_match_a_pixel_reference(index):
    scene = sample_scene(scene_seed(5, "vision-train", index), "s", 64)
    t = patch_targets(scene, PATCH)
    ref = _reference_counts(scene.to_json(), PATCH)
    for h in HEADS:
        assert np.array_equal(t.counts[h], ref[h]), h
    objectness = ref["colour"].sum(-1) / PATCH**2
    assert np.allclose(t.objectness, objectness)
    assert (t.centre[objectness == 0] == 0).all() and (t.centre >= 0).all() and (t.centre <= 1).all()


def test_tower_data_is_deterministic_and_disjoint():
    a = make_tower_data(48, "vision-train", seed=3, workers=1)
    b = make_tower_data(48, "vision-train", seed=3, workers=2)  # worker processes: same arrays
    assert np.array_equal(a.pixels, b.pixels)
    assert all(np.array_equal(a.counts[h], b.counts[h]) for h in HEADS)
    test = make_tower_data(48, "vision-probe-test", seed=3, workers=1)
    assert not {s.signature() for s in a.scenes} & {s.signature() for s in test.scenes}
    # the tower's seed streams are not the VLM's train/test streams
    assert not {s.seed for s in a.scenes + test.scenes} & {scene_seed(3, sp, i) for sp in ("train", "test")
                                                           for i in range(48)}
    labels = test.labels()["shape"]
    assert (labels >= 0).float().mean() > 0.15  # patches with >= 1/8 object pixels get a label
    assert MIN_PIXELS_FRACTION == 1 / 8


def _short(out, **kw) -> VisionPretrainConfig:
    base = dict(out=str(out), n_scenes=1500, steps=300, batch_size=32, lr=3e-3, warmup_steps=30,
                hidden_size=64, layers=2, heads=4, probe_train_scenes=400, probe_test_scenes=200,
                probe_steps=150, progress=False, workers=1)
    return VisionPretrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def short_tower(tmp_path_factory):
    out = tmp_path_factory.mktemp("tower")
    res = CliRunner().invoke(app, ["pretrain-vision", "--out", str(out), "--scenes", "1500", "--steps", "300",
                                   "--batch-size", "32", "--lr", "3e-3", "--hidden-size", "64", "--layers", "2",
                                   "--probe-train-scenes", "400", "--probe-test-scenes", "200",
                                   "--probe-steps", "150", "--no-progress", "--workers", "1"])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_tower_stage_improves_the_probe(short_tower):
    out, output = short_tower
    probe = json.loads((out / "probe.json").read_text())["towers"]
    assert "untrained" in output and "trained" in output and "count" in output
    gains = {p: probe["trained"][p]["accuracy"] - probe["untrained"][p]["accuracy"] for p in probe["trained"]}
    # this short run (300 steps, 64-wide tower) measured +10.1 colour, +5.0 shape, +7.9 size points
    assert all(gains[p] > 2.0 for p in ("colour", "shape", "size")), gains
    assert sum(gains.values()) > 15.0, gains
    from transformers import SiglipVisionModel

    tower = SiglipVisionModel.from_pretrained(out)
    assert tower.config.hidden_size == 64 and not tower.config.vision_use_head
    record = json.loads((out / "pretrain.json").read_text())
    assert record["seed"] == 0 and "pretrain-vision" in record["command"]


def test_same_seed_same_tower(tmp_path):
    from safetensors.torch import load_file

    for name in ("a", "b"):
        pretrain_vision(_short(tmp_path / name, n_scenes=64, steps=4, probe_train_scenes=32,
                               probe_test_scenes=16, probe_steps=2), say=lambda _: None)
    a, b = (load_file(tmp_path / n / "model.safetensors") for n in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_refuses_to_replace_a_tower(short_tower):
    out, _ = short_tower
    before = (out / "model.safetensors").read_bytes()
    res = CliRunner().invoke(app, ["pretrain-vision", "--out", str(out), "--steps", "1"])
    assert res.exit_code != 0
    assert "already holds a tower" in res.output and "--overwrite" in res.output
    assert (out / "model.safetensors").read_bytes() == before
    res = CliRunner().invoke(app, ["pretrain-vision", "--out", str(out / "x"), "--hidden-size", "30",
                                   "--heads", "4"])
    assert res.exit_code != 0 and "hidden_size 30 is not a multiple of heads 4" in res.output


def test_tiny_vlm_starts_from_the_tower_frozen(short_tower, tmp_path):
    from aki.data.synth import generate
    from aki.experiments.runner import ExperimentSettings, _stage_config, run_stage
    from aki.experiments.tiny_vlm import TinyVLMSize, build_tiny_vlm, load_tower

    tower_dir, _ = short_tower
    data = tmp_path / "data"
    generate(data, n_train=24, n_test=0, seed=1, workers=1)
    model, processor = build_tiny_vlm(data, TinyVLMSize(), seed=0, out_dir=tmp_path / "init",
                                      vision_tower=tower_dir)
    tower = load_tower(tower_dir)
    assert model.config.freeze_vision
    assert processor.image_processor.size == {"height": 64, "width": 64}
    for k, v in tower.state_dict().items():
        assert torch.equal(model.vision_tower.state_dict()[k], v), k
    s = ExperimentSettings(out=str(tmp_path / "runs"), data_dir=str(data), vision_tower=str(tower_dir),
                           batch_size=4, warmup_steps=1, progress=False)
    s.pt_steps = 3
    finals = []
    for run in ("pt-a", "pt-b"):  # same seed, same run: identical weights
        cfg = _stage_config(s, stage="pt", init_dir=tmp_path / "init", out_dir=tmp_path / run,
                            order="I&T", rule="causal", seed=0)
        assert cfg.freeze_vision
        run_stage(cfg)
        finals.append(tmp_path / run / "final")
    from safetensors.torch import load_file

    a, b = (load_file(f / "model.safetensors") for f in finals)
    assert all(torch.equal(a[k], b[k]) for k in a)
    changed = [k for k in a if not k.startswith("vision_tower.")
               and not torch.equal(a[k], model.state_dict()[k])]
    assert changed  # the resampler and the LLM trained ...
    for k, v in tower.state_dict().items():  # ... and the tower did not
        assert torch.equal(a[f"vision_tower.{k}"], v), k


def test_tiny_vlm_init_std_sets_the_decoder_and_resampler_scale(synth_train):
    """``TinyVLMSize.llm_init_std`` is transformers' ``initializer_range`` of the tiny decoder (and of
    the resampler, which reads it from the text config); it is saved with the model."""
    from aki.experiments.tiny_vlm import TinyVLMSize, build_tiny_vlm

    data = synth_train(24)
    stds = {}
    for std in (0.02, 0.08):
        model, _ = build_tiny_vlm(data, TinyVLMSize(llm_init_std=std, vocab_size=300), seed=0)
        assert model.config.text_config.initializer_range == std
        sd = model.state_dict()
        stds[std] = [float(sd[k].std()) for k in ("language_model.model.layers.0.self_attn.q_proj.weight",
                                                  "resampler.layers.0.attn.to_q.weight")]
    for std, measured in stds.items():
        assert all(abs(m - std) < 0.15 * std for m in measured), (std, measured)
