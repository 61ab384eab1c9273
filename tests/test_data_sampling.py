"""Mixture sampler, input order (I&T, T&I, DOT), augmentation, packing masks."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from PIL import Image

from aki.data import TABLE5_WEIGHTS, MixtureSampler, order_at, reorder_messages
from aki.data.augment import augment, random_resized_crop
from aki.data.batching import Encoded, collate, non_pad_fraction, pack
from aki.data.records import qa_messages
from aki.masks import Segment, build_attention_mask, build_position_ids


def take(sampler, n):
    return [next(sampler) for _ in range(n)]


def test_mixture_follows_weights_and_is_deterministic():
    sizes = [50] * len(TABLE5_WEIGHTS)
    weights = list(TABLE5_WEIGHTS.values())
    draws = take(MixtureSampler(sizes, weights, seed=3), 20000)
    assert draws == take(MixtureSampler(sizes, weights, seed=3), 20000)
    assert draws != take(MixtureSampler(sizes, weights, seed=4), 20000)
    counts = Counter(s for s, _ in draws)
    total = sum(weights)
    for s, w in enumerate(weights):
        assert abs(counts[s] / len(draws) - w / total) < 0.01


def test_mixture_epochs_cover_every_record():
    draws = take(MixtureSampler([7], seed=0), 21)
    for epoch in range(3):
        assert sorted(i for _, i in draws[epoch * 7:(epoch + 1) * 7]) == list(range(7))


def test_mixture_resumes_exactly():
    a = MixtureSampler([5, 9, 3], [0.5, 0.3, 0.2], seed=1)
    take(a, 37)
    state = a.state_dict()
    rest = take(a, 50)
    b = MixtureSampler([5, 9, 3], [0.5, 0.3, 0.2], seed=1)
    b.load_state_dict(state)
    assert take(b, 50) == rest
    with pytest.raises(ValueError, match="seed"):
        MixtureSampler([5, 9, 3], [0.5, 0.3, 0.2], seed=2).load_state_dict(state)


def test_mixture_ranks_are_disjoint_and_cover_one_process():
    one = take(MixtureSampler([40], seed=0), 40)
    r0 = take(MixtureSampler([40], seed=0, rank=0, world_size=2), 20)
    r1 = take(MixtureSampler([40], seed=0, rank=1, world_size=2), 20)
    assert not set(r0) & set(r1)
    assert sorted(r0 + r1) == sorted(one)


def test_order_helpers_and_dot_schedule():
    msgs = qa_messages("What?", "That.")
    ti = reorder_messages(msgs, "T&I")
    assert [c["type"] for c in ti[0]["content"]] == ["text", "image"]
    assert [c["type"] for c in msgs[0]["content"]] == ["image", "text"]  # not mutated
    assert reorder_messages(ti, "I&T") == msgs
    assert [order_at("dot", s, 10) for s in range(10)] == ["T&I"] * 5 + ["I&T"] * 5
    assert {order_at("I&T", s, 10) for s in range(10)} == {"I&T"}
    assert order_at("T&I", 9, 10) == "T&I"
    with pytest.raises(ValueError):
        order_at("X", 0, 1)


def test_augmentation_is_seeded():
    img = Image.linear_gradient("L").rotate(90).convert("RGB").resize((64, 48))  # varies along x
    a = [augment(img, "sft", random.Random(7)) for _ in range(3)]
    b = [augment(img, "sft", random.Random(7)) for _ in range(3)]
    assert [x.tobytes() for x in a] == [x.tobytes() for x in b]
    sizes = set()
    for k in range(30):
        crop = random_resized_crop(img, random.Random(k))
        w, h = crop.size
        assert 0.45 * 64 * 48 <= w * h <= 64 * 48
        sizes.add(crop.size)
    assert len(sizes) > 5
    flips = {augment(img, "pt", random.Random(k)).tobytes() == img.tobytes() for k in range(20)}
    assert flips == {True, False}  # PT: flip only, sometimes
    assert augment(img, "pt", random.Random(0)).size == img.size
    assert augment(img, "sft", random.Random(1), source="refcoco") is img  # boxes must stay put


def _encoded(layout: str, seed: int) -> Encoded:
    letters = {"T": Segment.TEXT, "I": Segment.IMAGE, "Q": Segment.QUERY, "A": Segment.ANSWER}
    seg = torch.tensor([int(letters[c]) for c in layout])
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (len(layout),), generator=g)
    labels = torch.where(seg == Segment.ANSWER, ids, torch.full_like(ids, -100))
    return Encoded(ids, labels, seg, None)


@pytest.mark.parametrize("rule", ["causal", "mma", "mixed", "mma-general"])
def test_packed_masks_equal_unpacked_per_document(rule):
    items = [_encoded("TIIIIQQQAA", 0), _encoded("TIIQQQQAAA", 1), _encoded("TIIIQQA", 2),
             _encoded("TIIIIIIIIQQAAAA", 3)]
    unpacked = collate(items, pad_id=0)
    packed = pack(items, max_length=24, pad_id=0)
    assert packed["input_ids"].shape[0] < unpacked["input_ids"].shape[0]
    assert non_pad_fraction(packed) > non_pad_fraction(unpacked)
    m_unp = build_attention_mask(unpacked["segments"], rule)
    m_pack = build_attention_mask(packed["segments"], rule, document_ids=packed["document_ids"])
    p_unp = build_position_ids(unpacked["segments"], rule)
    p_pack = build_position_ids(packed["segments"], rule, document_ids=packed["document_ids"])
    k = 0
    for row in range(packed["input_ids"].shape[0]):
        docs = packed["document_ids"][row]
        start = 0
        for d in range(int(docs.max()) + 1):
            n = int((docs == d).sum())
            sl = slice(start, start + n)
            assert torch.equal(m_pack[row, 0, sl, sl], m_unp[k, 0, :n, :n])
            assert torch.equal(p_pack[row, sl], p_unp[k, :n])
            assert torch.equal(packed["labels"][row, sl], unpacked["labels"][k, :n])
            # no attention across documents
            assert not m_pack[row, 0, sl, :start].any() and not m_pack[row, 0, sl, start + n:].any()
            start += n
            k += 1
    assert k == len(items)
