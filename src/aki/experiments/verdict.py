"""Does MMA beat causal by more than the seed-to-seed spread? One rule, stated in words.

For each results column (task family, CV-Bench aggregate, POPE F1, open questions) the
difference of means ``d = mean(mma) - mean(causal)`` over the seeds is compared with the
*seed spread* ``s = max(std(mma), std(causal))``, the larger of the two sample standard
deviations (n - 1 in the denominator). The difference **exceeds the spread** when ``|d| > s``;
otherwise it is **within the spread**. With fewer than two seeds per rule there is no spread,
and the verdict says so instead of guessing.

Why the larger std and not a t-test: with three seeds a test has almost no power and its
p-value would read as more than it is; "the gap is larger than the noise of either rule" is
the claim a reader can check against the table by eye. It is a screen, not significance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ColumnVerdict:
    column: str
    difference: float | None  # mean(a) - mean(b), percentage points
    spread: float | None  # max(std(a), std(b)); None with fewer than 2 seeds per rule
    outcome: str  # "better", "worse", "within", "no spread", "missing"


def compare_column(a: dict[str, Any], b: dict[str, Any], column: str) -> ColumnVerdict:
    """``a``/``b``: one column's ``{"mean", "std", "n"}`` cells (aki.experiments.report.summarise)."""
    if a["mean"] is None or b["mean"] is None:
        return ColumnVerdict(column, None, None, "missing")
    d = float(a["mean"]) - float(b["mean"])
    if (a["n"] or 0) < 2 or (b["n"] or 0) < 2 or a["std"] is None or b["std"] is None:
        return ColumnVerdict(column, d, None, "no spread")
    s = max(float(a["std"]), float(b["std"]))
    outcome = "within" if abs(d) <= s else ("better" if d > 0 else "worse")
    return ColumnVerdict(column, d, s, outcome)


def compare_rules(table: dict[str, dict[str, dict]], a: str = "mma", b: str = "causal") -> list[ColumnVerdict]:
    """Every column of ``table`` (``{mode: {column: cell}}``) for rule ``a`` against rule ``b``."""
    return [compare_column(table[a][col], table[b][col], col) for col in table[a] if col in table[b]]


def verdict_text(verdicts: list[ColumnVerdict], a: str = "MMA", b: str = "causal") -> str:
    """The verdict in words: one sentence overall, then one line per column."""
    done = [v for v in verdicts if v.outcome != "missing"]
    if not done:
        return f"{a} vs {b}: no column has scores for both rules."
    if all(v.outcome == "no spread" for v in done):
        head = (f"{a} − {b}: one seed per rule, so there is no seed spread to compare the differences with; "
                "run more seeds (--seeds 3) to tell a difference from noise.")
    else:
        better = [v.column for v in done if v.outcome == "better"]
        worse = [v.column for v in done if v.outcome == "worse"]
        if not better and not worse:
            head = (f"{a} − {b} does not exceed the seed spread in any column: on these runs the two rules "
                    "cannot be told apart.")
        else:
            parts = []
            if better:
                parts.append(f"{a} is ahead by more than the seed spread on {', '.join(better)}")
            if worse:
                parts.append(f"behind by more than the seed spread on {', '.join(worse)}")
            within = len(done) - len(better) - len(worse)
            head = (f"{a} − {b}: " + "; ".join(parts)
                    + f"; within the spread on the other {within} column(s).")
    lines = [head, ""]
    for v in done:
        d = f"{v.difference:+.1f}"
        s = "n/a" if v.spread is None else f"{v.spread:.1f}"
        lines.append(f"- {v.column}: {a} − {b} = {d} points, seed spread {s} -> {v.outcome}")
    lines.append("")
    lines.append("(difference of means vs the larger of the two rules' standard deviations over seeds; "
                 "see aki.experiments.verdict)")
    return "\n".join(lines)


__all__ = ["ColumnVerdict", "compare_column", "compare_rules", "verdict_text"]
