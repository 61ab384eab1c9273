"""Held-out probes: what a frozen tower's patch features show, attribute by attribute.

Features come from the tower's last layer (what the resampler reads). Each probe is trained on
the features of one set of scenes and scored on another, never seen by the tower:

- ``colour``, ``shape``, ``size``: a linear classifier per patch, for the object with the most
  pixels in the patch, scored on the patches where objects cover at least 1/8 of the pixels (the
  background is easy and would inflate the score);
- ``position``: an attentive probe (a learned query per ``colour shape`` name attends over the
  patches; a linear classifier reads the result): which third of the image, horizontally and
  vertically (9 classes), holds the named object, for objects unique by name;
- ``count``: the same probe: how many objects of a named colour and shape (0, 1, 2, 3+), for
  every name present and two absent ones per scene;
- ``depth``: two queries (the two names of an occluding pair, in random order): is the first in
  front.

Each score comes with the majority-class rate of its test items (``chance``).
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aki.data.synth.questions import occluding_pairs, unique_objects
from aki.data.synth.scenes import COLOURS, SHAPES, Scene
from aki.vision.data import TowerData

PATCH_PROBES = ("colour", "shape", "size")
OBJECT_PROBES = ("position", "count", "depth")
PROBES = (*PATCH_PROBES, *OBJECT_PROBES)
_NAME_ID = {f"{c} {s}": k for k, (c, s) in enumerate((c, s) for c in COLOURS for s in SHAPES)}
COUNT_CLASSES = 4  # 0, 1, 2, 3+


def pixel_values(pixels: np.ndarray, image_processor) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> normalised ``[N, 3, H, W]``, exactly as ``image_processor``
    (an :class:`aki.processing.AkiImageProcessor` whose size is the images' size) does."""
    h, w = image_processor.size["height"], image_processor.size["width"]
    if pixels.shape[1:3] != (h, w):
        raise ValueError(f"images are {pixels.shape[1:3]}, the image processor expects {(h, w)}.")
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() * image_processor.rescale_factor
    mean = torch.tensor(image_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(image_processor.image_std).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def extract_features(tower, pixels: np.ndarray, image_processor, batch_size: int = 256) -> torch.Tensor:
    """``[N, patches, hidden]`` last-layer patch features of a (frozen) tower."""
    was_training = tower.training
    tower.eval()
    out = []
    for k in range(0, len(pixels), batch_size):
        x = pixel_values(pixels[k : k + batch_size], image_processor)
        out.append(tower(pixel_values=x).last_hidden_state.float())
    tower.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def _region(scene: Scene, centre: list[float]) -> int:
    third = scene.image_size / 3
    return int(min(centre[1] // third, 2) * 3 + min(centre[0] // third, 2))


def object_items(scenes: list[Scene], seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per object probe: ``(scene index [K], query name ids [K, slots], label [K])``."""
    rng = random.Random(f"aki-vision-probe/{seed}")
    items: dict[str, list[tuple[int, list[int], int]]] = {p: [] for p in OBJECT_PROBES}
    for i, s in enumerate(scenes):
        for o in unique_objects(s):
            items["position"].append((i, [_NAME_ID[o.name]], _region(s, o.centre)))
        names = [o.name for o in s.objects]
        absent = [n for n in _NAME_ID if n not in names]
        for n in sorted(set(names)) + rng.sample(absent, min(2, len(absent))):
            items["count"].append((i, [_NAME_ID[n]], min(names.count(n), COUNT_CLASSES - 1)))
        for front, back in occluding_pairs(s):
            first_front = rng.random() < 0.5
            a, b = (front, back) if first_front else (back, front)
            items["depth"].append((i, [_NAME_ID[a.name], _NAME_ID[b.name]], 0 if first_front else 1))
    out = {}
    for p, rows in items.items():
        out[p] = (
            np.array([r[0] for r in rows], dtype=np.int64),
            np.array([r[1] for r in rows], dtype=np.int64).reshape(len(rows), -1),
            np.array([r[2] for r in rows], dtype=np.int64),
        )
    return out


class AttentiveProbe(nn.Module):
    """Learned name queries attend over the patch features; a linear layer reads the results."""

    def __init__(self, dim: int, slots: int, n_classes: int, n_names: int = len(_NAME_ID)):
        super().__init__()
        self.names = nn.Embedding(n_names, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(slots * dim, n_classes)

    def forward(self, feats: torch.Tensor, names: torch.Tensor) -> torch.Tensor:
        q = self.names(names)  # [B, S, D]
        att = torch.softmax(q @ self.key(feats).transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        return self.out((att @ self.value(feats)).flatten(1))


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    flat = train.reshape(-1, train.shape[-1])
    mean, std = flat.mean(0), flat.std(0).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]


def _fit(model: nn.Module, loss_fn, n: int, steps: int, batch: int, lr: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch, n),), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss_fn(idx).backward()
        opt.step()


def _majority(labels: np.ndarray | torch.Tensor) -> float:
    labels = np.asarray(labels)
    return 100.0 * np.bincount(labels).max() / max(len(labels), 1) if len(labels) else float("nan")


def probe_features(
    train_feats: torch.Tensor, train: TowerData, test_feats: torch.Tensor, test: TowerData,
    steps: int = 300, seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Train every probe on ``train``'s features and score it on ``test``'s:
    ``{probe: {"accuracy", "chance", "n_test"}}`` (accuracies in %)."""
    torch.manual_seed(seed)
    tr, te = _standardise(train_feats, test_feats)
    dim = tr.shape[-1]
    results: dict[str, dict[str, float]] = {}
    labels_tr, labels_te = train.labels(), test.labels()
    for head in PATCH_PROBES:
        y_tr, y_te = labels_tr[head], labels_te[head]
        on_tr, on_te = y_tr >= 0, y_te >= 0  # patches with enough object pixels
        x, y = tr[on_tr], y_tr[on_tr]
        clf = nn.Linear(dim, int(y.max()) + 1 if len(y) else 1)
        _fit(clf, lambda i, clf=clf, x=x, y=y: F.cross_entropy(clf(x[i]), y[i]), len(y), steps, 4096,
             1e-2, seed)
        with torch.no_grad():
            pred = clf(te[on_te]).argmax(-1)
        results[head] = {"accuracy": 100.0 * float((pred == y_te[on_te]).float().mean()),
                         "chance": _majority(y_te[on_te]), "n_test": int(on_te.sum())}
    items_tr, items_te = object_items(train.scenes, seed), object_items(test.scenes, seed + 1)
    for name in OBJECT_PROBES:
        (s_tr, q_tr, y_tr), (s_te, q_te, y_te) = items_tr[name], items_te[name]
        s_tr, q_tr, y_tr, s_te, q_te = (torch.from_numpy(a) for a in (s_tr, q_tr, y_tr, s_te, q_te))
        n_classes = {"position": 9, "count": COUNT_CLASSES, "depth": 2}[name]
        probe = AttentiveProbe(dim, q_tr.shape[1], n_classes)

        def loss(i, probe=probe, s=s_tr, q=q_tr, y=y_tr):
            return F.cross_entropy(probe(tr[s[i]], q[i]), y[i])

        _fit(probe, loss, len(y_tr), steps, 256, 3e-3, seed)
        with torch.no_grad():
            pred = torch.cat([probe(te[s_te[k : k + 512]], q_te[k : k + 512]).argmax(-1)
                              for k in range(0, len(s_te), 512)]) if len(s_te) else torch.zeros(0)
        acc = 100.0 * float((pred.numpy() == y_te).mean()) if len(y_te) else float("nan")
        results[name] = {"accuracy": acc, "chance": _majority(y_te), "n_test": len(y_te)}
    return results
