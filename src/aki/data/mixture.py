"""The weighted mixture sampler (paper Table 5): deterministic per seed, resumable, rank-disjoint.

Draw ``k`` of rank ``r`` is global draw ``g = k * world + r``; its source is a pure function of
``(seed, g)``. Inside a source, the rank's ``j``-th draw takes position ``j * world + r`` of that
source's stream (a fresh seeded permutation per epoch), so ranks never share a record and the
union over ranks is what one process would read. The state is a handful of counters, so resuming
restores it exactly without replaying anything.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from itertools import accumulate


class MixtureSampler:
    """Yields ``(source index, record index)`` pairs, sources drawn by weight."""

    def __init__(self, sizes: Sequence[int], weights: Sequence[float] | None = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
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
        total = float(sum(weights))
        self.cum = list(accumulate(w / total for w in weights))
        self.seed, self.rank, self.world = int(seed), int(rank), int(world_size)
        self.draws = 0
        self.per_source = [0] * len(sizes)
        self._perms: dict[tuple[int, int], list[int]] = {}

    def _source(self, g: int) -> int:
        u = random.Random(f"{self.seed}:mix:{g}").random()
        return min(bisect.bisect_right(self.cum, u), len(self.cum) - 1)

    def _perm(self, s: int, epoch: int) -> list[int]:
        key = (s, epoch)
        if key not in self._perms:
            if len(self._perms) > 4 * len(self.sizes):
                self._perms.clear()
            perm = list(range(self.sizes[s]))
            random.Random(f"{self.seed}:perm:{s}:{epoch}").shuffle(perm)
            self._perms[key] = perm
        return self._perms[key]

    def __iter__(self) -> MixtureSampler:
        return self

    def __next__(self) -> tuple[int, int]:
        s = self._source(self.draws * self.world + self.rank)
        pos = self.per_source[s] * self.world + self.rank
        n = self.sizes[s]
        epoch, offset = divmod(pos, n)
        self.draws += 1
        self.per_source[s] += 1
        return s, self._perm(s, epoch)[offset]

    def state_dict(self) -> dict:
        return {"draws": self.draws, "per_source": list(self.per_source), "seed": self.seed,
                "rank": self.rank, "world": self.world, "sizes": list(self.sizes)}

    def load_state_dict(self, state: dict) -> None:
        """Restore counters; refuses a state from a different seed, world size or data set."""
        for key in ("seed", "world", "sizes"):
            if state.get(key) != getattr(self, key):
                raise ValueError(f"cannot resume the data sampler: its {key} changed "
                                 f"({state.get(key)} in the checkpoint, {getattr(self, key)} now)")
        self.draws = int(state["draws"])
        self.per_source = [int(c) for c in state["per_source"]]
