"""The DataLoader stream of training steps: the same batches with any number of workers, from any
starting step, split over any world size; bad records counted by kind across workers."""

from __future__ import annotations

import json

import pytest
import torch

from aki.data import DataCounters, StepStream, StreamOptions, make_loader, sft_llava
from aki.testing import tiny_processor


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from aki.data.synth import generate

    d = tmp_path_factory.mktemp("synth")
    generate(d, n_train=12, n_test=0, seed=0)
    lines = (d / "train" / "sft.jsonl").read_text().splitlines()
    broken = d / "train" / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    for k in (3, 11, 20):  # one corrupt image, one missing image, one malformed record
        rec = json.loads(lines[k])
        if k == 3:
            rec["image"] = "broken.png"
        elif k == 11:
            rec["image"] = "images/nowhere.png"
        else:
            rec["conversations"] = [{"from": "gpt", "value": "no question"}]
        lines[k] = json.dumps(rec)
    (d / "train" / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    return sft_llava(d / "train" / "mixed.jsonl", name="synth")


def options(**over) -> StreamOptions:
    base = {"seed": 0, "stage": "sft", "order": "dot", "max_steps": 6, "batch_size": 8, "accum": 2,
            "max_length": 128, "augment": True}
    base.update(over)
    return StreamOptions(**base)


def collect(stream: StepStream, workers: int) -> list[dict]:
    return list(make_loader(stream, workers, prefetch_factor=2))


def same(a: list[dict], b: list[dict]) -> bool:
    for x, y in zip(a, b, strict=True):
        if x["step"] != y["step"] or x["order"] != y["order"] or len(x["batches"]) != len(y["batches"]):
            return False
        for bx, by in zip(x["batches"], y["batches"], strict=True):
            if bx.keys() != by.keys() or not all(torch.equal(bx[k], by[k]) for k in bx):
                return False
    return True


@pytest.mark.parametrize("packing", [False, True])
def test_workers_resume_and_counts(source, packing):
    proc = tiny_processor("llama")
    opts = options(pack_length=4 * 143 if packing else None)
    inline = collect(StepStream([source], [1.0], proc, opts), 0)
    assert [u["step"] for u in inline] == list(range(6))
    assert [u["order"] for u in inline] == ["T&I"] * 3 + ["I&T"] * 3
    assert all(len(u["batches"]) == 2 for u in inline)
    assert all(u["samples"] == 8 for u in inline)
    workers = collect(StepStream([source], [1.0], proc, opts), 2)
    assert same(inline, workers)
    # a stream started at step 4 reads exactly what the full one read from step 4 on
    assert same(inline[4:], collect(StepStream([source], [1.0], proc, opts, start_step=4), 2))
    # bad records are skipped, replaced, and counted by kind whichever process read them
    counts = [DataCounters(), DataCounters()]
    for c, units in zip(counts, (inline, workers), strict=True):
        for u in units:
            c.add(u)
    assert counts[0].state_dict() == counts[1].state_dict()
    assert counts[0].records == 48 + counts[0].n_skipped
    assert set(counts[0].skipped) <= {"corrupt_image", "missing_image", "malformed"}
    assert counts[0].n_skipped >= 3  # 48 draws over 40 records: every bad one is met at least once


def test_ranks_share_each_step_like_one_process(source):
    """World 2 reads, per step, the same samples as world 1 (what lets a run resume on another
    world size): rank 0 the first half of the step's slots, rank 1 the second."""
    proc = tiny_processor("llama")

    def rows(units):  # each sample's token ids (unpadded), per step
        out = []
        for u in units:
            step = []
            for b in u["batches"]:
                for ids, mask in zip(b["input_ids"], b["attention_mask"], strict=True):
                    step.append(tuple(ids[mask.bool()].tolist()))
            out.append(sorted(step))
        return out

    one = rows(collect(StepStream([source], [1.0], proc, options(accum=2, augment=False)), 0))
    halves = [rows(collect(StepStream([source], [1.0], proc, options(accum=1, world_size=2, rank=r,
                                                                          augment=False)), 0)) for r in (0, 1)]
    assert [sorted(a + b) for a, b in zip(*halves, strict=True)] == one


def test_unusable_data_is_reported_not_looped_on(tmp_path):
    (tmp_path / "bad.jsonl").write_text(json.dumps({"image": "missing.png", "caption": "x"}) + "\n")
    from aki.data import pt_jsonl

    src = pt_jsonl(tmp_path / "bad.jsonl")
    stream = StepStream([src], [1.0], tiny_processor("llama"), options(stage="pt", order="I&T", batch_size=2, accum=1))
    unit = stream.make_step(0)
    assert unit["error"] and "draws in a row" in unit["error"] and "missing" in unit["error"]
    assert unit["skipped"] == {"missing_image": 64} and unit["records"] == 64
