"""The attention rules against slow reference implementations written straight from their formulas.

The references below are plain Python loops over (query, key) pairs on lists of ints: they share
no code with :mod:`aki.masks` (which is vectorised over index grids). Hypothesis draws random
layouts: several images and turns, text before/after images, left or right padding, packed
documents, touching images with ``image_ids``, extra modalities, CCA on square and non-square grids.

The layout strategies here are reused by ``test_masks_render.py`` and ``test_masks_leaks.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aki.masks import (
    RULE_NAMES,
    Segment,
    build_additive_mask,
    build_attention_mask,
    build_position_ids,
)

PAD, TEXT, IMAGE, QUERY, ANSWER = (int(s) for s in (Segment.PAD, Segment.TEXT, Segment.IMAGE,
                                                     Segment.QUERY, Segment.ANSWER))
MAX_LEN = 40
SETTINGS = settings(deadline=None, derandomize=True, max_examples=60)
UNLOCK_FRACTIONS = (0.0, 0.1, 0.25, 0.3, 1 / 3, 0.5, 0.7, 1.0)


# --------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One batch of segment rows plus the optional per-token ids, as plain lists."""

    segments: list[list[int]]
    document_ids: list[list[int]] | None = None
    image_ids: list[list[int]] | None = None
    modality_ids: list[list[int]] | None = None
    grid: tuple[int, int] | None = None
    notes: dict = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.segments[0])

    def tensors(self) -> dict:
        """Keyword arguments for the library (tensors), leaving out what is None."""
        out = {}
        for name in ("document_ids", "image_ids", "modality_ids"):
            value = getattr(self, name)
            if value is not None:
                out[name] = torch.tensor(value)
        if self.grid is not None:
            out["grid"] = self.grid
        return out

    def seg(self) -> torch.Tensor:
        return torch.tensor(self.segments)


@st.composite
def structured_document(draw, image_size, touching: bool, max_len: int):
    """One conversation: optional system text, 1-3 turns of [text] images [query] [text] answer [text].

    Returns (labels, image index per token (-1 elsewhere), modality per token)."""
    labels: list[int] = []
    images: list[int] = []
    n_images = 0

    def add(label: int, count: int, image: int = -1) -> None:
        labels.extend([label] * count)
        images.extend([image] * count)

    if draw(st.booleans()):
        add(TEXT, draw(st.integers(1, 3)))  # system prompt
    for turn in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):  # text before the images (T&I order, or a chat marker)
            add(draw(st.sampled_from([TEXT, QUERY])), draw(st.integers(1, 2)))
        for k in range(draw(st.integers(0, 2))):
            if k and not (touching and draw(st.booleans())):
                add(TEXT, 1)  # separator between two images, unless they touch
            add(IMAGE, draw(image_size), image=n_images)
            n_images += 1
        add(QUERY, draw(st.integers(0, 3)))
        if draw(st.booleans()):
            add(TEXT, draw(st.integers(1, 2)))  # text after the question (assistant marker)
        last = turn > 0 and draw(st.booleans())
        add(ANSWER, draw(st.integers(0 if last else 1, 3)))
        if draw(st.booleans()):
            add(TEXT, 1)  # end-of-turn marker
        if len(labels) > max_len:
            break
    modality = [1 if s == IMAGE else 0 for s in labels]
    return labels, images, modality


@st.composite
def random_document(draw, max_len: int):
    """Arbitrary labels (any order, touching images = one image per run)."""
    labels = draw(st.lists(st.sampled_from([TEXT, IMAGE, QUERY, ANSWER]), min_size=1, max_size=max_len))
    images, run, prev = [], -1, None
    for s in labels:
        if s == IMAGE and prev != IMAGE:
            run += 1
        images.append(run if s == IMAGE else -1)
        prev = s
    modality = [1 if s == IMAGE else 0 for s in labels]
    return labels, images, modality


@st.composite
def cases(draw, kind: str = "any", max_len: int = MAX_LEN, max_batch: int = 3):
    """A batch of rows, each 1-3 packed documents, padded left or right.

    ``kind``: "structured" (conversations), "random" (arbitrary labels), "any" (either),
    "cca" (conversations whose images all fit one grid, square or ``grid=(h, w)``)."""
    if kind == "any":
        kind = draw(st.sampled_from(["structured", "random"]))
    grid = None
    if kind == "cca":
        if draw(st.booleans()):
            side = draw(st.integers(1, 4))
            size = st.just(side * side)
        else:
            grid = draw(st.sampled_from([(1, 3), (2, 3), (3, 2), (2, 4), (4, 2), (3, 4), (1, 1), (2, 2)]))
            size = st.just(grid[0] * grid[1])
    else:
        size = st.integers(1, 4)
    pass_image_ids = kind != "random" and draw(st.booleans())
    packed = draw(st.booleans())
    pass_modality = draw(st.booleans())
    batch = draw(st.integers(1, max_batch))

    rows, docs, imgs, mods = [], [], [], []
    for _ in range(batch):
        labels, doc, img, mod = [], [], [], []
        n_docs = draw(st.integers(1, 3)) if packed else 1
        image_base = 0
        for d in range(n_docs):
            budget = max_len - len(labels)
            if budget <= 0:
                break
            if kind == "random":
                lab, im, mo = draw(random_document(min(budget, 16)))
            else:
                lab, im, mo = draw(structured_document(size, touching=pass_image_ids, max_len=budget))
            if d and len(labels) + len(lab) > max_len:
                break
            labels += lab
            doc += [d] * len(lab)
            img += [image_base + i if i >= 0 else -1 for i in im]
            image_base = max(img, default=-1) + 1
            if pass_modality:
                # per-token overrides: images may become modality 2 (audio, say), text 0 or 3
                mo = [draw(st.sampled_from([1, 2])) if s == IMAGE else draw(st.sampled_from([0, 0, 3]))
                      for s in lab]
            mod += mo
        rows.append(labels)
        docs.append(doc)
        imgs.append(img)
        mods.append(mod)

    left = draw(st.booleans())
    length = max(len(r) for r in rows) + draw(st.integers(0, 2))
    pad_doc = draw(st.sampled_from(["edge", "minus"]))
    for i, r in enumerate(rows):
        n = length - len(r)
        edge_doc = (docs[i][0] if left else docs[i][-1]) if pad_doc == "edge" else -1
        fill = {"rows": PAD, "docs": edge_doc, "imgs": -1, "mods": 0}
        for name, lst in (("rows", rows), ("docs", docs), ("imgs", imgs), ("mods", mods)):
            lst[i] = [fill[name]] * n + lst[i] if left else lst[i] + [fill[name]] * n
    return Case(
        segments=rows,
        document_ids=docs if packed or draw(st.booleans()) else None,
        image_ids=imgs if pass_image_ids else None,
        modality_ids=mods if pass_modality else None,
        grid=grid,
        notes={"kind": kind, "left": left},
    )


# --------------------------------------------------------------------------------------------
# Reference implementations (plain loops over pairs, from the specification)
# --------------------------------------------------------------------------------------------


def _docs(case: Case, b: int) -> list[int]:
    return case.document_ids[b] if case.document_ids is not None else [0] * case.length


def ref_images(case: Case, b: int) -> list[tuple | None]:
    """An image key per token (None for non-image): the given image id, or the contiguous run,
    always within one document."""
    seg, doc = case.segments[b], _docs(case, b)
    keys: list[tuple | None] = []
    run = -1
    for t, s in enumerate(seg):
        if s != IMAGE:
            keys.append(None)
            continue
        if case.image_ids is not None:
            keys.append((doc[t], case.image_ids[b][t]))
        else:
            if t == 0 or seg[t - 1] != IMAGE or doc[t - 1] != doc[t]:
                run += 1
            keys.append((doc[t], run))
    return keys


def ref_rings(case: Case, b: int) -> list[int]:
    """Ring of every image token on its image's grid (0 outermost), -1 elsewhere."""
    keys = ref_images(case, b)
    members: dict[tuple, list[int]] = {}
    for t, key in enumerate(keys):
        if key is not None:
            members.setdefault(key, []).append(t)
    rings = [-1] * len(keys)
    for positions in members.values():
        if case.grid is not None:
            h, w = case.grid
        else:
            h = w = math.isqrt(len(positions))
        assert h * w == len(positions)
        for rank, t in enumerate(positions):
            r, c = divmod(rank, w)
            rings[t] = min(r, c, h - 1 - r, w - 1 - c)
    return rings


def _answer_between(seg: list[int], q: int, k: int) -> bool:
    lo, hi = min(q, k), max(q, k)
    return any(seg[t] == ANSWER for t in range(lo, hi + 1))


def ref_allowed(case: Case, b: int, rule: str, unlock_fraction=None) -> list[list[bool]]:
    """L x L matrix: may query q attend to key k (PAD diagonal included)."""
    seg, doc = case.segments[b], _docs(case, b)
    L = len(seg)
    images = ref_images(case, b)
    rings = ref_rings(case, b) if rule == "cca" else None
    if case.modality_ids is not None:
        modality = case.modality_ids[b]
    else:
        modality = [1 if s == IMAGE else 0 for s in seg]
    frac = None if unlock_fraction is None else Fraction(unlock_fraction).limit_denominator(10_000)

    def image_index(q: int) -> int:
        return sum(1 for t in range(q) if seg[t] == IMAGE)

    def query_index(k: int) -> int:
        return sum(1 for t in range(k) if seg[t] == QUERY)

    out = [[False] * L for _ in range(L)]
    for q in range(L):
        for k in range(L):
            if seg[q] == PAD:
                out[q][k] = q == k
                continue
            if seg[k] == PAD or doc[q] != doc[k]:
                continue
            causal = k <= q
            same_image = images[q] is not None and images[q] == images[k]
            if rule == "causal":
                ok = causal
            elif rule == "mma":
                extra = seg[q] == IMAGE and seg[k] == QUERY and not _answer_between(seg, q, k)
                if extra and frac is not None:
                    s = image_index(q) + query_index(k)
                    extra = math.floor((s + 1) * frac) > math.floor(s * frac)
                ok = causal or extra
            elif rule == "mma-general":
                ok = causal or (
                    modality[q] != modality[k]
                    and seg[q] != ANSWER
                    and seg[k] != ANSWER
                    and not _answer_between(seg, q, k)
                )
            elif rule == "mixed":
                ok = causal or same_image
            elif rule == "cca":
                ok = rings[k] <= rings[q] if same_image else causal
            else:  # pragma: no cover
                raise AssertionError(rule)
            out[q][k] = ok
    return out


def ref_mask(case: Case, rule: str, unlock_fraction=None) -> torch.Tensor:
    rows = [ref_allowed(case, b, rule, unlock_fraction) for b in range(len(case.segments))]
    return torch.tensor(rows, dtype=torch.bool).unsqueeze(1)


def ref_positions(case: Case, rule: str) -> list[list[int]]:
    """0, 1, ... over real tokens per document; CCA: an image at p gives ring r position p + r and
    the next token continues at p + max ring + 1. PAD gets 0."""
    out = []
    for b, seg in enumerate(case.segments):
        doc = _docs(case, b)
        images = ref_images(case, b)
        rings = ref_rings(case, b) if rule == "cca" else None
        pos = [0] * len(seg)
        counter, current_doc, t = 0, None, 0
        while t < len(seg):
            if seg[t] == PAD:
                t += 1
                continue
            if doc[t] != current_doc:
                counter, current_doc = 0, doc[t]
            if rule == "cca" and seg[t] == IMAGE:
                end = t
                while end < len(seg) and images[end] == images[t]:
                    end += 1
                for u in range(t, end):
                    pos[u] = counter + rings[u]
                counter += max(rings[t:end]) + 1
                t = end
                continue
            pos[t] = counter
            counter += 1
            t += 1
        out.append(pos)
    return out


def library_options(case: Case, rule: str) -> dict:
    """The case's ids as library keyword arguments, keeping only the options ``rule`` takes."""
    options = case.tensors()
    if rule != "mma-general":
        options.pop("modality_ids", None)
    if rule != "cca":
        options.pop("grid", None)
    return options


def library_mask(case: Case, rule: str, unlock_fraction=None) -> torch.Tensor:
    return build_attention_mask(case.seg(), rule, unlock_fraction=unlock_fraction,
                                **library_options(case, rule))


def _explain(case: Case, got: torch.Tensor, want: torch.Tensor) -> str:
    diff = (got != want).nonzero().tolist()[:8]
    return f"segments={case.segments} differences (b, h, q, k)={diff}"


# --------------------------------------------------------------------------------------------
# Hand-written examples (readable anchors for the property tests)
# --------------------------------------------------------------------------------------------


def test_mma_example_image_sees_its_question_only():
    # system, image x2, question x2, answer x2, next turn: question, answer
    seg = torch.tensor([[TEXT, IMAGE, IMAGE, QUERY, QUERY, ANSWER, ANSWER, QUERY, ANSWER]])
    m = build_attention_mask(seg, "mma")[0, 0]
    causal = torch.ones(9, 9, dtype=torch.bool).tril()
    extra = (m & ~causal).nonzero().tolist()
    assert extra == [[1, 3], [1, 4], [2, 3], [2, 4]]
    assert not (causal & ~m).any()


def test_mma_general_example_text_sees_later_image():
    seg = torch.tensor([[QUERY, QUERY, IMAGE, IMAGE, ANSWER, TEXT, IMAGE]])
    m = build_attention_mask(seg, "mma-general")[0, 0]
    extra = (m & ~torch.ones(7, 7, dtype=torch.bool).tril()).nonzero().tolist()
    assert extra == [[0, 2], [0, 3], [1, 2], [1, 3], [5, 6]]


def test_cca_example_rings_on_3x3():
    seg = torch.tensor([[TEXT] + [IMAGE] * 9 + [QUERY]])
    m = build_attention_mask(seg, "cca")[0, 0]
    centre = 1 + 4
    assert m[centre, 1:10].all()  # the centre (ring 1) sees all 9 tokens, later ones too
    corner = 1
    assert m[corner, 1:10].tolist() == [True, True, True, True, False, True, True, True, True]
    pos = build_position_ids(seg, "cca")[0].tolist()
    assert pos == [0, 1, 1, 1, 1, 2, 1, 1, 1, 1, 3]


def test_left_padding_pad_diagonal():
    seg = torch.tensor([[PAD, PAD, TEXT, IMAGE, QUERY], [TEXT, IMAGE, QUERY, ANSWER, ANSWER]])
    for rule in RULE_NAMES:
        m = build_attention_mask(seg, rule)
        assert m[0, 0, :2].tolist() == [[True, False, False, False, False], [False, True, False, False, False]]
        assert not m[0, 0, 2:, :2].any()
    assert build_position_ids(seg)[0].tolist() == [0, 0, 0, 1, 2]


# --------------------------------------------------------------------------------------------
# Properties: every rule equals its reference
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["causal", "mma", "mma-general", "mixed"])
@SETTINGS
@given(case=cases())
def test_rule_matches_reference(rule, case):
    got = library_mask(case, rule)
    want = ref_mask(case, rule)
    assert got.shape == (len(case.segments), 1, case.length, case.length)
    assert got.dtype == torch.bool
    assert torch.equal(got, want), _explain(case, got, want)


@SETTINGS
@given(case=cases("cca"))
def test_cca_matches_reference(case):
    got = library_mask(case, "cca")
    want = ref_mask(case, "cca")
    assert torch.equal(got, want), _explain(case, got, want)


@settings(deadline=None, derandomize=True, max_examples=40)
@given(case=cases(), fraction=st.sampled_from(UNLOCK_FRACTIONS))
def test_unlock_fraction_matches_reference(case, fraction):
    got = library_mask(case, "mma", unlock_fraction=fraction)
    want = ref_mask(case, "mma", unlock_fraction=fraction)
    assert torch.equal(got, want), _explain(case, got, want)
    mma = library_mask(case, "mma")
    causal = library_mask(case, "causal")
    assert not (got & ~mma).any() and not (causal & ~got).any()  # between causal and MMA
    if fraction == 0:
        assert torch.equal(got, causal)
    if fraction == 1:
        assert torch.equal(got, mma)


@settings(deadline=None, derandomize=True, max_examples=30)
@given(case=cases("structured"))
def test_unlock_fraction_is_monotone(case):
    masks = [library_mask(case, "mma", unlock_fraction=f) for f in (0.0, 0.5, 1.0)]
    # f = 1/2 unlocks every other anti-diagonal; f = 0 and 1 are the two ends
    assert not (masks[0] & ~masks[1]).any() and not (masks[1] & ~masks[2]).any()


@SETTINGS
@given(case=cases("structured"))
def test_additive_mask_matches_dense(case):
    for rule in ("causal", "mma", "mma-general", "mixed"):
        additive = build_additive_mask(case.seg(), rule, **library_options(case, rule))
        assert additive.dtype == torch.float32
        assert set(additive.unique().tolist()) <= {0.0, torch.finfo(torch.float32).min}
        assert torch.equal(additive == 0, ref_mask(case, rule))


# --------------------------------------------------------------------------------------------
# Position ids
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["causal", "mma", "mma-general", "mixed"])
@settings(deadline=None, derandomize=True, max_examples=30)
@given(case=cases())
def test_position_ids_match_reference(rule, case):
    options = case.tensors()
    options.pop("modality_ids", None)
    options.pop("grid", None)
    got = build_position_ids(case.seg(), rule, **options)
    assert got.dtype == torch.long
    assert got.tolist() == ref_positions(case, rule), case.segments


@SETTINGS
@given(case=cases("cca"))
def test_cca_position_ids_match_reference(case):
    options = case.tensors()
    options.pop("modality_ids", None)
    got = build_position_ids(case.seg(), "cca", **options)
    assert got.tolist() == ref_positions(case, "cca"), case.segments


def test_cca_positions_non_square_grid_and_packing():
    seg = torch.tensor([[TEXT, *[IMAGE] * 8, QUERY, TEXT, *[IMAGE] * 8, PAD]])
    docs = torch.tensor([[0] * 10 + [1] * 9 + [1]])
    pos = build_position_ids(seg, "cca", document_ids=docs, grid=(2, 4))[0].tolist()
    # a 2 x 4 grid is all ring 0: one position per image, then the next token continues at +1
    assert pos == [0, *[1] * 8, 2, 0, *[1] * 8, 0]
