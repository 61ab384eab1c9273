"""Where the question span ends: at the assistant-turn marker, for every template family.

The reference is the release's MMA block (shared/reference/official-aki.md, "Facts confirmed by
running the release"): image rows see the columns from just after the image through the
``<|assistant|>`` token, inclusive; the newline after it and the answer stay causal for them,
and the labels start right after ``<|assistant|>``. The markers below are written from the
families' published chat formats, not read from aki's code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from tokenizers import AddedToken

from aki.masks import Segment, build_attention_mask
from aki.processing import AkiProcessor, build_tiny_tokenizer, siglip_image_processor
from aki.processing.segmenter import assistant_marker
from aki.prompts import assistant_message, qa_messages, user_message

N_IMG = 3
IMAGE = Image.new("RGB", (8, 8), (200, 30, 30))
MARKERS = {
    "phi3": "<|assistant|>",
    "llama3": "<|start_header_id|>assistant<|end_header_id|>",
    "qwen2": "<|im_start|>assistant",
    "qwen3": "<|im_start|>assistant",
}


def _processor(family: str, tokenizer=None) -> AkiProcessor:
    tok = tokenizer if tokenizer is not None else build_tiny_tokenizer(family)
    return AkiProcessor(siglip_image_processor(8), tok, num_image_tokens=N_IMG, family=family)


@pytest.fixture(scope="module")
def procs() -> dict[str, AkiProcessor]:
    return {family: _processor(family) for family in MARKERS}


def _token_starts(proc: AkiProcessor, text: str) -> np.ndarray:
    """Character where each token of the expanded row starts (image copies share their marker's)."""
    enc = proc.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [start for start, _ in enc["offset_mapping"]]
    reps = [N_IMG if t == proc.image_token_id else 1 for t in enc["input_ids"]]
    return np.repeat(np.asarray(starts), reps)


def _release_block(proc: AkiProcessor, text: str, segments: torch.Tensor) -> torch.Tensor:
    """The release's extra (non-causal) cells: image rows x columns after their image, through
    the end of the block's assistant marker (character positions of the rendered text)."""
    starts = _token_starts(proc, text)
    marker = MARKERS[proc.family]
    is_img = (segments == Segment.IMAGE).numpy()
    L = len(starts)
    expected = torch.zeros(L, L, dtype=torch.bool)
    for i in np.flatnonzero(is_img):
        end = text.index(marker, starts[i]) + len(marker)  # the block's marker closes its span
        for j in range(i + 1, L):
            if starts[j] < end and not is_img[j]:
                expected[i, j] = True
    return expected


@pytest.mark.parametrize("family", sorted(MARKERS))
def test_token_after_the_marker_stays_causal_for_image_rows(procs, family):
    proc = procs[family]
    text = proc.apply_chat_template(qa_messages("What is it?", "A red cube."), add_generation_prompt=False)
    batch = proc(images=[IMAGE], text=text)
    segs, ids, labels = batch["segments"][0], batch["input_ids"][0], batch["labels"][0]
    mask = build_attention_mask(segs[None], "mma")[0, 0]
    starts = _token_starts(proc, text)
    marker_end = text.index(MARKERS[family]) + len(MARKERS[family])
    last_marker = int(np.flatnonzero(starts < marker_end)[-1])  # the token that ends the marker
    images = torch.nonzero(segs == Segment.IMAGE).flatten()
    assert mask[images, last_marker].all()  # the marker itself: unlocked, as in the release
    assert not mask[images, last_marker + 1].any()  # what follows it: causal
    assert segs[last_marker] == Segment.QUERY and segs[last_marker + 1] == Segment.ANSWER
    assert labels[last_marker] == -100 and labels[last_marker + 1] == ids[last_marker + 1]  # loss starts there
    extra = mask & ~torch.ones_like(mask).tril()
    assert torch.equal(extra, _release_block(proc, text, segs))


def test_phi3_release_layout(procs):
    """One image, a question and an answer on phi3: the release's mask cells and labels."""
    proc = procs["phi3"]
    text = proc.apply_chat_template(qa_messages("Is it red?", "Yes."), add_generation_prompt=False)
    batch = proc(images=[IMAGE], text=text)
    segs, ids, labels = batch["segments"][0], batch["input_ids"][0], batch["labels"][0]
    tokens = proc.tokenizer.convert_ids_to_tokens(ids.tolist())
    k = tokens.index("<|assistant|>")
    assert proc.tokenizer.decode(ids[k + 1 :]) == "\nYes.<|endoftext|>"
    assert (labels[: k + 1] == -100).all() and torch.equal(labels[k + 1 :], ids[k + 1 :])
    mask = build_attention_mask(segs[None], "mma")[0, 0]
    first, last = (int(x) for x in torch.nonzero(segs == Segment.IMAGE).flatten()[[0, -1]])
    assert mask[first : last + 1, last + 1 : k + 1].all()
    assert not mask[first : last + 1, k + 1 :].any()


def test_tokenizer_that_absorbs_the_newline():
    """Phi-3's role tokens are rstrip: the newline joins <|assistant|>; the split still holds."""
    tok = build_tiny_tokenizer("phi3")
    tok.backend_tokenizer.add_special_tokens([AddedToken("<|assistant|>", special=True, normalized=False, rstrip=True)])
    proc = _processor("phi3", tok)
    text = proc.apply_chat_template(qa_messages("Is it red?", "Yes."), add_generation_prompt=False)
    batch = proc(images=[IMAGE], text=text)
    segs, ids = batch["segments"][0], batch["input_ids"][0]
    tokens = proc.tokenizer.convert_ids_to_tokens(ids.tolist())
    k = tokens.index("<|assistant|>")
    assert proc.tokenizer.decode(ids[k + 1 :]) == "Yes.<|endoftext|>"  # no separate newline token
    assert segs[k] == Segment.QUERY and (segs[k + 1 :] == Segment.ANSWER).all()
    mask = build_attention_mask(segs[None], "mma")[0, 0]
    images = torch.nonzero(segs == Segment.IMAGE).flatten()
    assert mask[images, k].all() and not mask[images, k + 1 :].any()
    generation = proc(images=[IMAGE], text=proc.apply_chat_template([user_message("Is it red?")]))
    assert generation["segments"][0, -1] == Segment.QUERY and "labels" not in generation


@pytest.mark.parametrize(
    ("prompt", "marker"),
    [
        ("<|assistant|>\n", "<|assistant|>"),
        ("<|start_header_id|>assistant<|end_header_id|>\n\n", "<|start_header_id|>assistant<|end_header_id|>"),
        ("<|im_start|>assistant\n<think>\n\n</think>\n\n", "<|im_start|>assistant"),
        ("\n### Response:\n", "\n### Response:"),
        (" ASSISTANT: ", " ASSISTANT:"),
        ("<start_of_turn>model\n", "<start_of_turn>model"),
    ],
)
def test_assistant_marker_of_a_generation_prompt(prompt, marker):
    assert assistant_marker(prompt) == marker


def test_generation_prompt_lead_in_is_answer_side_without_labels(procs):
    proc = procs["qwen3"]
    batch = proc(images=[IMAGE], text=proc.apply_chat_template([user_message("Hi?")]))
    segs = batch["segments"][0]
    lead_in = int((segs == Segment.ANSWER).sum())
    assert proc.tokenizer.decode(batch["input_ids"][0, -lead_in:]) == "\n<think>\n\n</think>\n\n"
    assert "labels" not in batch  # a prompt is not an answer
    prefilled = proc.apply_chat_template([user_message("Hi?"), assistant_message("It is")],
                                         add_generation_prompt=False, continue_final_message=True)
    assert prefilled.endswith("</think>\n\nIt is")
    assert "labels" in proc(images=[IMAGE], text=prefilled)


_TEXT = st.text(alphabet=st.sampled_from(list("abc XYZ?.,\n")), min_size=0, max_size=12)


@settings(max_examples=30, deadline=None)
@given(family=st.sampled_from(sorted(MARKERS)), turns=st.lists(st.tuples(_TEXT, _TEXT, st.integers(0, 2)),
                                                                 min_size=1, max_size=3))
def test_unlocked_cells_are_exactly_the_release_block(family, turns):
    """Any conversation: the cells MMA adds to causal are the release's block, turn by turn."""
    proc = _PROCS.setdefault(family, _processor(family))
    messages = []
    for question, answer, n_images in turns:
        messages += [user_message(question or "q", n_images), assistant_message(answer or "a")]
    text = proc.apply_chat_template(messages, add_generation_prompt=False)
    n = sum(k for _, _, k in turns)
    batch = proc(images=[[IMAGE] * n], text=[text])
    segs = batch["segments"][0]
    mask = build_attention_mask(segs[None], "mma")[0, 0]
    extra = mask & ~torch.ones_like(mask).tril()
    assert torch.equal(extra, _release_block(proc, text, segs))
    assert torch.equal(batch["labels"][0] != -100, segs == Segment.ANSWER)
    assert proc.decode(batch["input_ids"][0]) == text


_PROCS: dict[str, AkiProcessor] = {}
