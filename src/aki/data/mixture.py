"""The weighted mixture sampler (paper Table 5) as a pure function of a global draw index.

Draw ``g`` of a run picks its source from the weights with a random number that depends only on
``(seed, g)``; inside a source, draws take the records of a fresh seeded permutation per epoch, in
order, so every record is seen once per epoch of its source. Which record draw ``g`` gets is its
position among the earlier draws of the same source: the sources of draws are generated in
blocks (one vectorised draw per block), and each block's per-source counts are accumulated once.

Nothing here depends on the number of processes or data workers: whoever asks for draw ``g``
gets the same record, so a run can be split over any ``world x workers`` and resumed from just a
step counter, on another world size too. A draw whose record turns out unusable is replaced by
:meth:`MixtureSampler.retry` draws, which are pure functions of ``(seed, g, attempt)`` as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BLOCK = 4096
"""Draws whose sources are generated together (the unit of the per-source position counts)."""

_MIX, _PERM, _RETRY = 0, 1, 2  # stream tags inside the seed sequence


class MixtureSampler:
    """``draw(g) -> (source index, record index)``; deterministic per seed, any order of queries."""

    def __init__(self, sizes: Sequence[int], weights: Sequence[float] | None = None, seed: int = 0):
        if not sizes:
            raise ValueError("the mixture needs at least one source")
        weights = list(weights) if weights is not None else [1.0] * len(sizes)
        if len(weights) != len(sizes):
            raise ValueError(f"{len(sizes)} sources but {len(weights)} weights")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"mixture weights must be >= 0 with a positive sum; got {weights}")
        empty = [i for i, (n, w) in enumerate(zip(sizes, weights, strict=True)) if n == 0 and w > 0]
        if empty:
            raise ValueError(f"mixture sources {empty} are empty but have a positive weight")
        self.sizes = [int(n) for n in sizes]
        self.weights = [float(w) for w in weights]
        self.seed = int(seed)
        self._cum = np.cumsum(np.asarray(self.weights) / sum(self.weights))
        self._cum[-1] = 1.0
        self._prefix: list[np.ndarray] = [np.zeros(len(sizes), dtype=np.int64)]  # counts before block b
        self._block_id = -1
        self._block_src = np.empty(0, dtype=np.int64)
        self._block_pos = np.empty(0, dtype=np.int64)
        self._perms: dict[int, tuple[int, np.ndarray]] = {}

    # ------------------------------------------------------------------ blocks
    def _sources(self, block: int) -> np.ndarray:
        u = np.random.default_rng([self.seed, _MIX, block]).random(BLOCK)
        return np.minimum(np.searchsorted(self._cum, u, side="right"), len(self.sizes) - 1)

    def _load_block(self, block: int) -> None:
        """Sources of ``block`` and each draw's position in its source's stream."""
        while len(self._prefix) <= block:  # extend the prefix counts (once per block per process)
            b = len(self._prefix) - 1
            counts = np.bincount(self._sources(b), minlength=len(self.sizes))
            self._prefix.append(self._prefix[b] + counts)
        src = self._sources(block)
        within = np.empty(BLOCK, dtype=np.int64)
        seen = self._prefix[block].copy()
        for k, s in enumerate(src.tolist()):
            within[k] = seen[s]
            seen[s] += 1
        self._block_id, self._block_src, self._block_pos = block, src, within

    def _perm(self, s: int, epoch: int) -> np.ndarray:
        cached = self._perms.get(s)
        if cached is None or cached[0] != epoch:
            dtype = np.int32 if self.sizes[s] < 2**31 else np.int64
            perm = np.random.default_rng([self.seed, _PERM, s, epoch]).permutation(self.sizes[s]).astype(dtype)
            self._perms[s] = cached = (epoch, perm)
        return cached[1]

    # ------------------------------------------------------------------ draws
    def draw(self, g: int) -> tuple[int, int]:
        """The source and record of global draw ``g`` (g >= 0)."""
        if g < 0:
            raise ValueError(f"draw index must be >= 0; got {g}")
        block, k = divmod(int(g), BLOCK)
        if block != self._block_id:
            self._load_block(block)
        s = int(self._block_src[k])
        epoch, offset = divmod(int(self._block_pos[k]), self.sizes[s])
        return s, int(self._perm(s, epoch)[offset])

    def retry(self, g: int, attempt: int) -> tuple[int, int]:
        """A replacement for draw ``g`` whose record was unusable (``attempt`` >= 1): source by
        weight, record uniformly at random; a pure function of ``(seed, g, attempt)``."""
        rng = np.random.default_rng([self.seed, _RETRY, int(g), int(attempt)])
        s = min(int(np.searchsorted(self._cum, rng.random(), side="right")), len(self.sizes) - 1)
        return s, int(rng.integers(self.sizes[s]))

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> dict:
        """What a checkpoint must match for its step counter to mean the same draws."""
        return {"seed": self.seed, "sizes": list(self.sizes), "weights": list(self.weights)}

    def check_fingerprint(self, saved: dict) -> None:
        """Refuse to resume when the data set or the mixture changed (the same step would read
        other records)."""
        for key, now in self.fingerprint().items():
            if key in saved and saved[key] != now:
                raise ValueError(
                    f"cannot resume the data stream: its {key} changed ({saved[key]} in the checkpoint, "
                    f"{now} now); restore the data and config the run was started with, or start a new run"
                )
