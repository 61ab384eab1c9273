"""Generation through transformers' GenerationMixin: the prompt is read under the rule, answers causally.

Batched greedy == one by one == a no-cache recompute (transformers' ``use_cache=False`` and a
hand-written loop that rebuilds the whole mask with generated tokens labelled ANSWER); beams and
``num_return_sequences`` expand images per sample; sampling, logits processors, stop strings,
streamers and static caches are transformers' own and work with every rule.
"""

from __future__ import annotations

import threading

import pytest
import torch
from transformers import TextIteratorStreamer

from aki.masks import Segment
from aki.testing import build_seeded, make_batch, split_rows, tiny_config, tiny_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

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
def test_batched_greedy_equals_one_by_one_recompute_and_static_cache(backbone, rule):
    cfg = tiny_config(backbone, rule)
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, LAYOUTS, seed=2)
    out = model.generate(**batch, max_new_tokens=NEW)
    assert out.shape == (len(LAYOUTS), batch["input_ids"].shape[1] + NEW)
    assert torch.equal(out[:, :-NEW], batch["input_ids"])
    singles = torch.stack([model.generate(**row, max_new_tokens=NEW)[0, -NEW:] for row in split_rows(batch, cfg)])
    assert torch.equal(out[:, -NEW:], singles)
    assert torch.equal(out, _recompute(model, batch, NEW))
    assert torch.equal(out, model.generate(**batch, max_new_tokens=NEW, use_cache=False))
    assert torch.equal(out, model.generate(**batch, max_new_tokens=NEW, cache_implementation="static"))


def test_generation_reads_the_prompt_under_the_rule():
    """MMA and causal share weights; their generations differ because the prompt is read differently."""
    cfg = tiny_config("phi3", "mma")
    mma = build_seeded(cfg, 0)
    causal = build_seeded(tiny_config("phi3", "causal"), 0)
    batch = make_batch(cfg, LAYOUTS[:2], seed=2)
    with torch.no_grad():
        first_mma = mma(**batch).logits[:, -1]
        first_causal = causal(**batch).logits[:, -1]
    assert not torch.allclose(first_mma, first_causal, atol=1e-5)
    out_mma = mma.generate(**batch, max_new_tokens=1, output_logits=True, return_dict_in_generate=True)
    torch.testing.assert_close(out_mma.logits[0], first_mma)


def test_beams_and_return_sequences_expand_images_per_sample():
    cfg = tiny_config("llama", "mma")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, ["T I T I QQ", "TTQQQ", "T I QQQQ"], seed=3)  # 2, 0 and 1 images
    for kwargs in ({"num_beams": 2, "num_return_sequences": 2},
                   {"do_sample": True, "top_k": 1, "num_return_sequences": 3}):
        out = model.generate(**batch, max_new_tokens=4, **kwargs)
        n = kwargs["num_return_sequences"]
        assert out.shape[0] == 3 * n
        for i, row in enumerate(split_rows(batch, cfg)):
            alone = model.generate(**row, max_new_tokens=4, **kwargs)
            assert torch.equal(out[n * i : n * (i + 1), -4:], alone[:, -4:])


def test_sampling_is_seeded_and_top_k_one_is_greedy():
    cfg = tiny_config("llama", "mma")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, LAYOUTS[:2], seed=2)

    def sample(seed, **kw):
        torch.manual_seed(seed)
        return model.generate(**batch, max_new_tokens=NEW, do_sample=True, **kw)

    assert torch.equal(sample(1, temperature=1.5), sample(1, temperature=1.5))
    greedy = model.generate(**batch, max_new_tokens=NEW)
    assert torch.equal(sample(7, top_k=1), greedy)


def test_logits_processors_apply():
    cfg = tiny_config("phi3", "mma")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, LAYOUTS[:2], seed=2)
    free = model.generate(**batch, max_new_tokens=NEW)[:, -NEW:]
    banned = int(free[0, 0])
    out = model.generate(**batch, max_new_tokens=NEW, bad_words_ids=[[banned]])[:, -NEW:]
    assert not (out == banned).any()
    penalised = model.generate(**batch, max_new_tokens=NEW, repetition_penalty=1e9)
    for row in penalised:  # no token of the prompt or earlier answer is chosen again
        new = row[-NEW:].tolist()
        assert len(set(new)) == NEW and not set(new) & set(row[:-NEW].tolist())
    eos = int(free[0, 0])  # row 0 would stop at once; min_new_tokens keeps it going
    stopped = model.generate(**batch, max_new_tokens=NEW, eos_token_id=eos, pad_token_id=0)
    assert int(stopped[0, batch["input_ids"].shape[1]]) == eos
    kept = model.generate(**batch, max_new_tokens=NEW, eos_token_id=eos, pad_token_id=0, min_new_tokens=3)
    assert kept.shape[1] >= batch["input_ids"].shape[1] + 3 and eos not in kept[0, -NEW:][:3].tolist()


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


def _chat_batch(processor, question="What colour is the square?"):
    from PIL import Image

    image = Image.new("RGB", (40, 30), (200, 10, 10))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    return processor(text=[prompt], images=[[image]], return_tensors="pt")


def test_streamer_and_stop_strings_with_the_tokenizer():
    model, processor = tiny_model("qwen3", "mma", seed=0)
    batch = _chat_batch(processor)
    n = batch["input_ids"].shape[1]
    free = model.generate(**batch, max_new_tokens=8, eos_token_id=None)
    text = processor.tokenizer.decode(free[0, n:])
    streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True)
    worker = threading.Thread(target=model.generate, kwargs={**batch, "max_new_tokens": 8, "eos_token_id": None,
                                                             "streamer": streamer})
    worker.start()
    streamed = "".join(streamer)
    worker.join()
    assert streamed == text
    # stop as soon as the text of the third new token has been generated
    stop = processor.tokenizer.decode(free[0, n + 2 : n + 3])
    assert stop.strip(), text
    out = model.generate(**batch, max_new_tokens=8, eos_token_id=None, stop_strings=[stop],
                         tokenizer=processor.tokenizer)
    got = processor.tokenizer.decode(out[0, n:])
    assert got.endswith(stop) and text.startswith(got) and len(got) < len(text)
    with pytest.raises(ValueError, match="tokenizer"):
        model.generate(**batch, max_new_tokens=2, stop_strings=[stop])


def test_right_padding_and_chunked_prefill_are_refused():
    cfg = tiny_config("qwen2", "mma")
    model = build_seeded(cfg, 0)
    with pytest.raises(ValueError, match="left-padded"):
        model.generate(**make_batch(cfg, LAYOUTS[:2], seed=2, padding="right"), max_new_tokens=NEW)
    row = make_batch(cfg, ["TT I QQQ"], seed=2)
    with pytest.raises(ValueError, match="prefill_chunk_size"):
        model.generate(**row, max_new_tokens=2, prefill_chunk_size=4)


@pytest.mark.slow
def test_flex_attention_generates_like_sdpa():
    cfg = tiny_config("llama", "mma")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, LAYOUTS, seed=2)
    ref = model.generate(**batch, max_new_tokens=NEW)
    model.set_attn_implementation("flex_attention")
    assert torch.equal(model.generate(**batch, max_new_tokens=NEW), ref)


def test_causal_rules_prefill_in_chunks():
    cfg = tiny_config("llama", "mma", rule_options={"unlock_fraction": 0})
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, LAYOUTS, seed=2)
    whole = model.generate(**batch, max_new_tokens=NEW)
    assert torch.equal(model.generate(**batch, max_new_tokens=NEW, prefill_chunk_size=7), whole)


def test_the_image_token_is_never_generated():
    cfg = tiny_config("llama", "mma")
    model = build_seeded(cfg, 0)
    batch = make_batch(cfg, LAYOUTS[:2], seed=2)
    with torch.no_grad():  # point <image>'s head row at the last prompt state: its logit wins
        last = model(**batch, output_hidden_states=True).hidden_states[-1][:, -1]
        model.language_model.lm_head.weight[cfg.image_token_id] = 100 * last.mean(0)
        assert (model(**batch).logits[:, -1].argmax(-1) == cfg.image_token_id).all()
    out = model.generate(**batch, max_new_tokens=NEW, suppress_tokens=[])
    assert not (out[:, -NEW:] == cfg.image_token_id).any()
