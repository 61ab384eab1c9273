"""The paper's Table 1 from ``aki eval``'s scores (markdown, JSON, a bar chart) and the terminal summary.

Columns in the paper's order; a benchmark not run, skipped or failed shows "-". MME-P and MME-C
are sums of subtask scores (at most 2000 and 800), the others percentages.
"""

from __future__ import annotations

import json
from pathlib import Path

from aki.eval.benchmarks import TABLE1_COLUMNS


def table1_row(scores: dict) -> dict[str, float | None]:
    """``{column: value}`` for every Table 1 column, from ``{bench: scores}``."""
    row: dict[str, float | None] = dict.fromkeys(TABLE1_COLUMNS)
    for bench_scores in scores.values():
        if isinstance(bench_scores, dict):
            for col, value in (bench_scores.get("headline") or {}).items():
                if col in row:
                    row[col] = value
    return row


def table1_markdown(row: dict[str, float | None], model_name: str) -> str:
    head = "| Model | " + " | ".join(TABLE1_COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(TABLE1_COLUMNS)
    cells = " | ".join("-" if row[c] is None else f"{row[c]:.1f}" for c in TABLE1_COLUMNS)
    return "\n".join([head, rule, f"| {model_name} | {cells} |"]) + "\n"


def bar_chart(row: dict[str, float | None], path: Path, model_name: str) -> Path:
    """Two panels: MME sums (left) and the percentage benchmarks (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mme = [c for c in ("MME-P", "MME-C")]
    pct = [c for c in TABLE1_COLUMNS if c not in mme]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [1, 5]})
    for ax, cols, label in ((ax1, mme, "score (sum of subtasks)"), (ax2, pct, "score (%)")):
        values = [row[c] if row[c] is not None else 0.0 for c in cols]
        bars = ax.bar(cols, values, color=["#4C72B0" if row[c] is not None else "#DDDDDD" for c in cols])
        for bar, c in zip(bars, cols, strict=True):
            ax.annotate("-" if row[c] is None else f"{row[c]:.1f}", (bar.get_x() + bar.get_width() / 2,
                        bar.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_ylabel(label)
        ax.tick_params(axis="x", rotation=45)
    ax2.set_ylim(0, 100)
    fig.suptitle(f"{model_name}: the paper's Table 1 benchmarks (grey: not run)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_table1(scores: dict, out_dir: Path, model_name: str) -> dict[str, float | None]:
    """``table1.md``, ``table1.json`` and ``table1.png`` in ``out_dir``; returns the row."""
    row = table1_row(scores)
    (out_dir / "table1.md").write_text(table1_markdown(row, model_name), encoding="utf-8")
    (out_dir / "table1.json").write_text(json.dumps({"model": model_name, "columns": row}, indent=2) + "\n")
    bar_chart(row, out_dir / "table1.png", model_name)
    return row


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def summary_lines(result) -> list[str]:
    """Terminal lines for one :class:`aki.eval.suite.BenchResult`."""
    if result.status != "scored":
        return [f"{result.name}: {result.status}: {result.message}"]
    s = result.scores
    head = "  ".join(f"{k} {_fmt(v)}" for k, v in (s.get("headline") or {}).items())
    unparsed = s.get("unparsed", 0)
    line = (f"{result.name}: {head} | {result.scored} rows scored ({result.generated} generated now), "
            f"{unparsed} unparsed/empty (counted wrong), {len(result.bad_rows)} bad rows")
    if "judge_unparsed" in s:
        line += f", {s['judge_unparsed']} judge replies unparsed"
    lines = [line]
    for label in ("rule", "matching", "parsing", "extraction", "scoring"):
        if s.get(label):
            lines.append(f"  {label}: {s[label]}")
    if result.dominant:
        answer, share = result.dominant
        lines.append(f"  warning: one answer covers {100 * share:.0f}% of the rows ({answer!r}); the model "
                     "may be ignoring the question")
    for bad in result.bad_rows[:5]:
        lines.append(f"  bad row: {bad}")
    if len(result.bad_rows) > 5:
        lines.append(f"  ... and {len(result.bad_rows) - 5} more bad rows")
    lines += [f"  note: {n}" for n in [*result.notes, *s.get("notes", [])]]
    return lines


__all__ = ["bar_chart", "summary_lines", "table1_markdown", "table1_row", "write_table1"]
