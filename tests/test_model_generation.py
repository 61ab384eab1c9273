"""Generation: prompt prefill under the rule, causal decoding; batched == one-by-one == recompute."""

from __future__ import annotations

import pytest
import torch

from aki.masks import Segment
from aki.testing import build_seeded, make_batch, split_rows, tiny_config

NEW = 5
LAYOUTS = ["TT I QQQ", "T I QQQQQQQ", "TTQQ", "I T I QQ"]


def _recompute(model, batch, steps: int) -> torch.Tensor:
    """Greedy decoding without a cache: rebuild the full mask (generated tokens = ANSWER) each step."""
    ids, seg, att = batch["input_ids"], batch["segments"], batch["attention_mask"]
    B = ids.shape[0]
    for _ in range(steps):
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=att, segments=seg,
                           pixel_values=batch["pixel_values"]).logits[:, -1].float()
        logits[:, model.config.image_token_id] = float("-inf")
        nxt = logits.argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], 1)
        seg = torch.cat([seg, torch.full((B, 1), int(Segment.ANSWER))], 1)
        att = torch.cat([att, torch.ones(B, 1, dtype=att.dtype)], 1)
    return ids


@pytest.mark.parametrize(("backbone", "rule"), [("phi3", "mma"), ("llama", "cca"), ("qwen3", "mixed")])
def test_batched_greedy_equals_one_by_one_and_no_cache_recompute(backbone, rule):
    cfg = tiny_config(backbone, rule)
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, LAYOUTS, seed=2)
    out = model.generate(**batch, max_new_tokens=NEW)
    assert out.shape == (len(LAYOUTS), batch["input_ids"].shape[1] + NEW)
    assert torch.equal(out[:, :-NEW], batch["input_ids"])
    singles = torch.stack([model.generate(**row, max_new_tokens=NEW)[0, -NEW:] for row in split_rows(batch, cfg)])
    assert torch.equal(out[:, -NEW:], singles)
    assert torch.equal(out, _recompute(model, batch, NEW))


def test_right_padded_prompts_generate_like_left_padded():
    cfg = tiny_config("qwen2", "mma")
    model = build_seeded(cfg, 0)
    left = model.generate(**make_batch(cfg, LAYOUTS[:2], seed=2), max_new_tokens=NEW)
    right = model.generate(**make_batch(cfg, LAYOUTS[:2], seed=2, padding="right"), max_new_tokens=NEW)
    assert torch.equal(left[:, -NEW:], right[:, -NEW:])


def test_per_row_eos_stops_and_pads():
    cfg = tiny_config("phi3", "mma")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, LAYOUTS, seed=2)
    free = model.generate(**batch, max_new_tokens=NEW)[:, -NEW:]
    eos = int(free[0, 1])  # row 0 stops at its second new token
    out = model.generate(**batch, max_new_tokens=NEW, eos_token_id=[eos, 10_000], pad_token_id=0)
    new = out[:, batch["input_ids"].shape[1]:]
    for b in range(len(LAYOUTS)):
        hits = (free[b] == eos).nonzero()
        stop = int(hits[0]) if len(hits) else None
        if stop is None:
            assert torch.equal(new[b], free[b, : new.shape[1]])
        else:
            assert torch.equal(new[b, : stop + 1], free[b, : stop + 1])
            assert bool((new[b, stop + 1 :] == 0).all())
    if all((free[b] == eos).any() for b in range(len(LAYOUTS))):
        assert new.shape[1] <= NEW


def test_sampling_is_seeded_and_respects_top_p():
    cfg = tiny_config("llama", "mma")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, LAYOUTS[:2], seed=2)

    def sample(seed, **kw):
        g = torch.Generator().manual_seed(seed)
        return model.generate(**batch, max_new_tokens=NEW, do_sample=True, generator=g, **kw)

    assert torch.equal(sample(1, temperature=1.5), sample(1, temperature=1.5))
    greedy = model.generate(**batch, max_new_tokens=NEW)
    assert torch.equal(sample(7, top_p=1e-6), greedy)  # nucleus of one token = greedy


def test_streamer_and_stream_generate():
    cfg = tiny_config("qwen3", "mma")
    model = build_seeded(cfg, 0)
    row = make_batch(cfg, ["TT I QQQ"], seed=2)

    class Recorder:
        def __init__(self):
            self.chunks, self.ended = [], False

        def put(self, value):
            self.chunks.append(value.clone())

        def end(self):
            self.ended = True

    rec = Recorder()
    out = model.generate(**row, max_new_tokens=NEW, streamer=rec)
    assert rec.ended and torch.equal(rec.chunks[0], row["input_ids"])
    assert [int(c.reshape(-1)[0]) for c in rec.chunks[1:]] == out[0, -NEW:].tolist()
    assert list(model.stream_generate(**row, max_new_tokens=NEW)) == out[0, -NEW:].tolist()
    with pytest.raises(ValueError, match="batch size 1"):
        model.generate(**make_batch(cfg, LAYOUTS[:2]), max_new_tokens=2, streamer=Recorder())


def test_stop_strings_need_a_tokenizer_and_stop_rows():
    cfg = tiny_config("llama", "mma")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, ["TT I QQQ"], seed=2)
    with pytest.raises(ValueError, match="tokenizer"):
        model.generate(**batch, max_new_tokens=2, stop_strings=["x"])

    class Tok:  # decodes ids as "<id>" so a stop string can name a token
        def decode(self, ids, skip_special_tokens=False):
            return "".join(f"<{i}>" for i in ids)

    free = model.generate(**batch, max_new_tokens=NEW)[0, -NEW:]
    out = model.generate(**batch, max_new_tokens=NEW, stop_strings=[f"<{int(free[1])}>"], tokenizer=Tok())
    assert out[0, batch["input_ids"].shape[1]:].tolist() == free[: int((free == free[1]).nonzero()[0]) + 1].tolist()
