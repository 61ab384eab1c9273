"""The leakage guard, and the errors bad input gets.

``find_leaks`` is checked against a brute-force transitive closure (BFS from every position) on
random masks; it finds the paper's App. A leak (MMA on captions labelled QUERY), and none for
the leak-free rules on any layout whose trained positions are those predicting ANSWER tokens.
"""

from __future__ import annotations

from collections import deque

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aki.masks import (
    LeakageError,
    Segment,
    build_attention_mask,
    build_block_mask,
    build_position_ids,
    check_no_leaks,
    find_leaks,
    predicts_from_labels,
    reachable_max,
)
from test_masks_reference import ANSWER, IMAGE, PAD, QUERY, TEXT, Case, cases, library_options

SETTINGS = settings(deadline=None, derandomize=True, max_examples=60)


# --------------------------------------------------------------------------------------------
# Brute force
# --------------------------------------------------------------------------------------------


def closure_reach(mask: list[list[bool]], p: int) -> set[int]:
    """Every position p's state can depend on through any number of layers (BFS, p included)."""
    seen, todo = {p}, deque([p])
    while todo:
        q = todo.popleft()
        for k, allowed in enumerate(mask[q]):
            if allowed and k not in seen:
                seen.add(k)
                todo.append(k)
    return seen


def brute_leaks(mask: torch.Tensor, predicts: torch.Tensor) -> torch.Tensor:
    m = mask[:, 0].tolist() if mask.dim() == 4 else mask.tolist()
    out = []
    for b, rows in enumerate(m):
        out.append([bool(predicts[b, p]) and max(closure_reach(rows, p)) > p for p in range(len(rows))])
    return torch.tensor(out, dtype=torch.bool)


def brute_reach_max(mask: torch.Tensor) -> torch.Tensor:
    m = mask[:, 0].tolist()
    return torch.tensor([[max(closure_reach(rows, p)) for p in range(len(rows))] for rows in m])


@st.composite
def random_masks(draw):
    B, L = draw(st.integers(1, 3)), draw(st.integers(1, 14))
    density = draw(st.sampled_from([0.05, 0.15, 0.3, 0.6]))
    bits = draw(st.lists(st.floats(0, 1), min_size=B * L * L, max_size=B * L * L))
    noise = torch.tensor(bits).view(B, 1, L, L)
    if draw(st.booleans()):  # causal plus a few future edges: long chains through the layers
        mask = torch.ones(L, L, dtype=torch.bool).tril() | (noise < density / 4)
    else:
        mask = noise < density
    predicts = torch.tensor(draw(st.lists(st.booleans(), min_size=B * L, max_size=B * L))).view(B, L)
    return mask, predicts


@SETTINGS
@given(data=random_masks())
def test_find_leaks_matches_brute_force_closure(data):
    mask, predicts = data
    assert torch.equal(find_leaks(mask, predicts), brute_leaks(mask, predicts))
    assert torch.equal(reachable_max(mask).long(), brute_reach_max(mask))
    assert torch.equal(find_leaks(mask[:, 0], predicts), brute_leaks(mask, predicts))  # [B, L, L] too


def test_find_leaks_long_chain():
    """A chain 0 -> 3 -> 4 -> 7 -> 8 -> 11 reaches far only through many layers (several sweeps)."""
    L = 12
    mask = torch.eye(L, dtype=torch.bool)
    for q, k in [(0, 3), (3, 4), (4, 7), (7, 8), (8, 11)]:
        mask[q, k] = True
    mask = mask[None, None]
    reach = reachable_max(mask)[0].tolist()
    assert reach == [11, 1, 2, 11, 11, 5, 6, 11, 11, 9, 10, 11]
    predicts = torch.ones(1, L, dtype=torch.bool)
    assert torch.equal(find_leaks(mask, predicts), brute_leaks(mask, predicts))
    assert find_leaks(mask, predicts)[0].nonzero().flatten().tolist() == [0, 3, 4, 7, 8]


@settings(deadline=None, derandomize=True, max_examples=40)
@given(case=cases(), rule=st.sampled_from(["causal", "mma", "mma-general", "mixed"]))
def test_find_leaks_matches_brute_force_on_rule_masks(case, rule):
    mask = build_attention_mask(case.seg(), rule, **library_options(case, rule))
    predicts = case.seg() != PAD
    assert torch.equal(find_leaks(mask, predicts), brute_leaks(mask, predicts))


# --------------------------------------------------------------------------------------------
# What the guard is for
# --------------------------------------------------------------------------------------------


def answer_predictions(case: Case) -> torch.Tensor:
    """Positions trained in SFT: those whose next token is an ANSWER token of the same document."""
    seg = case.seg()
    docs = torch.tensor(case.document_ids) if case.document_ids is not None else torch.zeros_like(seg)
    nxt_answer = (seg[:, 1:] == ANSWER) & (docs[:, 1:] == docs[:, :-1]) & (seg[:, :-1] != PAD)
    return torch.nn.functional.pad(nxt_answer, (0, 1), value=False)


CAPTION = [TEXT] + [IMAGE] * 4 + [TEXT] * 2 + [None] * 6 + [TEXT]  # <s> image <chunk> caption </s>


def caption_sample(label: int) -> tuple[torch.Tensor, torch.Tensor]:
    seg = torch.tensor([[label if s is None else s for s in CAPTION]])
    labels = torch.full_like(seg, -100)
    labels[0, 7:] = 1  # the caption and EOS carry the loss
    return seg, predicts_from_labels(labels)


def test_app_a_caption_leak_under_mma():
    seg, predicts = caption_sample(QUERY)  # the mistake: the caption labelled QUERY
    leaks = find_leaks(build_attention_mask(seg, "mma"), predicts)
    # every caption prediction except the last (EOS, whose future is only EOS) sees later caption
    # tokens through the image tokens
    assert leaks[0].nonzero().flatten().tolist() == [6, 7, 8, 9, 10, 11]
    with pytest.raises(LeakageError) as err:
        check_no_leaks(seg, predicts, "mma")
    message = str(err.value)
    assert "'mma'" in message and "position 6" in message
    assert "Segment.ANSWER" in message and "'causal'" in message and "App. A" in message
    assert isinstance(err.value, ValueError)
    # the fixes the message names: label the caption ANSWER, or train it causally
    check_no_leaks(seg, predicts, "causal")
    fixed, predicts = caption_sample(ANSWER)
    for rule in ("mma", "mma-general", "mixed", "causal", "cca"):
        check_no_leaks(fixed, predicts, rule)


def test_mma_general_leaks_on_caption_labelled_text():
    """Under Eq. 6, text before an image is unlocked too: a caption labelled TEXT leaks there."""
    seg, predicts = caption_sample(TEXT)
    assert not find_leaks(build_attention_mask(seg, "mma"), predicts).any()
    assert find_leaks(build_attention_mask(seg, "mma-general"), predicts).any()


@SETTINGS
@given(case=cases(), rule=st.sampled_from(["causal", "mma", "mma-general", "mixed"]),
       fraction=st.sampled_from([None, 0.3, 0.5]))
def test_leak_free_rules_on_any_layout(case, rule, fraction):
    options = library_options(case, rule)
    if fraction is not None and rule == "mma":
        options["unlock_fraction"] = fraction
    predicts = answer_predictions(case)
    mask = build_attention_mask(case.seg(), rule, **options)
    assert not find_leaks(mask, predicts).any(), case.segments
    check_no_leaks(case.seg(), predicts, rule, **options)


@settings(deadline=None, derandomize=True, max_examples=30)
@given(case=cases("cca"))
def test_cca_is_leak_free_for_answers(case):
    predicts = answer_predictions(case)
    assert not find_leaks(build_attention_mask(case.seg(), "cca", **library_options(case, "cca")), predicts).any()


@settings(deadline=None, derandomize=True, max_examples=30)
@given(case=cases("structured"))
def test_mma_leaks_when_everything_is_trained(case):
    """Sanity: with every real position trained, MMA leaks exactly where an image precedes a
    question in its block (so the guard is not trivially silent)."""
    seg = case.seg()
    mask = build_attention_mask(seg, "mma", **library_options(case, "mma"))
    unlocked = (mask & ~build_attention_mask(seg, "causal", **library_options(case, "causal"))).any()
    assert bool(find_leaks(mask, seg != PAD).any()) == bool(unlocked)


def test_predicts_from_labels():
    labels = torch.tensor([-100, 5, 6, -100, 7])
    assert predicts_from_labels(labels).tolist() == [[True, True, False, True, False]]
    labels = torch.tensor([[1, 2, 3], [-100, -100, 0]])
    assert predicts_from_labels(labels).tolist() == [[True, True, False], [False, True, False]]
    assert predicts_from_labels(torch.tensor([0, -1, 2]), ignore_index=-1).tolist() == [[False, True, False]]


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


SEG = torch.tensor([[TEXT, IMAGE, IMAGE, IMAGE, IMAGE, QUERY, ANSWER]])


def test_unknown_rule():
    for build in (build_attention_mask, build_block_mask, build_position_ids):
        with pytest.raises(ValueError, match="unknown attention rule 'full'"):
            build(SEG, "full")


@pytest.mark.parametrize("rule, option", [
    ("causal", {"unlock_fraction": 0.5}),
    ("cca", {"unlock_fraction": 0.5}),
    ("mma-general", {"unlock_fraction": 0.5}),
    ("mma", {"grid": (2, 2)}),
    ("mixed", {"grid": (2, 2)}),
])
def test_unknown_option_for_rule(rule, option):
    with pytest.raises(ValueError, match=f"rule '{rule}' takes no option"):
        build_attention_mask(SEG, rule, **option)


@pytest.mark.parametrize("fraction", [-0.1, 1.01, 2, float("inf")])
def test_unlock_fraction_out_of_range(fraction):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        build_attention_mask(SEG, "mma", unlock_fraction=fraction)


@pytest.mark.parametrize("fraction", [float("nan"), "0.5"])
def test_unlock_fraction_not_a_number(fraction):
    with pytest.raises(TypeError, match="unlock_fraction"):
        build_attention_mask(SEG, "mma", unlock_fraction=fraction)


def test_bad_segments():
    with pytest.raises(ValueError, match=r"shape \[B, L\]"):
        build_attention_mask(SEG[None], "mma")
    with pytest.raises(ValueError, match=r"unknown labels \[4\]"):
        build_attention_mask(torch.tensor([[0, 1, 4]]), "mma")
    with pytest.raises(ValueError, match=r"unknown labels \[-2\]"):
        build_attention_mask(torch.tensor([[0, -2]]), "causal")
    with pytest.raises(TypeError, match="integer"):
        build_attention_mask(SEG.float(), "mma")
    with pytest.raises(TypeError, match="integer"):
        build_attention_mask(SEG.bool(), "mma")
    with pytest.raises(ValueError, match="document_ids must have the same shape"):
        build_attention_mask(SEG, "mma", document_ids=torch.zeros(1, 3, dtype=torch.long))
    # a 1-D row and a plain list are accepted as one sample
    assert build_attention_mask(SEG[0], "mma").shape == (1, 1, 7, 7)
    assert build_attention_mask(SEG.tolist(), "mma").shape == (1, 1, 7, 7)


def test_cca_grid_errors():
    six = torch.tensor([[TEXT] + [IMAGE] * 6 + [QUERY]])
    with pytest.raises(ValueError, match=r"square grid.*grid=\(h, w\)"):
        build_attention_mask(six, "cca")
    with pytest.raises(ValueError, match=r"square grid"):
        build_position_ids(six, "cca")
    assert build_attention_mask(six, "cca", grid=(2, 3)).shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"grid 3x3 expects 9 tokens"):
        build_attention_mask(six, "cca", grid=(3, 3))
    mixed_sizes = torch.tensor([[IMAGE] * 4 + [TEXT] + [IMAGE] * 9])
    with pytest.raises(ValueError, match="different sizes"):
        build_attention_mask(mixed_sizes, "cca")


def test_leak_input_errors():
    mask = build_attention_mask(SEG, "mma")
    with pytest.raises(ValueError, match="predicts must be"):
        find_leaks(mask, torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        find_leaks(mask.float(), torch.ones(1, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="head-broadcast"):
        find_leaks(mask.expand(1, 2, 7, 7), torch.ones(1, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="square"):
        find_leaks(mask[..., :5], torch.ones(1, 7, dtype=torch.bool))
    assert Segment.ANSWER == ANSWER  # the test module's constants are the library's
