"""Results tables shaped like the paper's Table 1 (rows: modes; columns: task families, CV-Bench
2D/3D/overall, POPE F1, open questions), with mean and standard deviation over seeds, saved as
markdown and JSON, plus a bar plot and (for unlock fractions) a curve like the paper's Fig. 10."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from aki.experiments.modes import MODES

COLUMNS: list[tuple[str, tuple[str, ...]]] = [
    ("Count", ("cvbench", "per_task", "Count")),
    ("Relation", ("cvbench", "per_task", "Relation")),
    ("Depth", ("cvbench", "per_task", "Depth")),
    ("Distance", ("cvbench", "per_task", "Distance")),
    ("CV-Bench 2D", ("cvbench", "2D")),
    ("CV-Bench 3D", ("cvbench", "3D")),
    ("CV-Bench overall", ("cvbench", "overall")),
    ("POPE F1", ("pope", "overall", "f1")),
    ("Open QA", ("attributes", "accuracy")),
]


def _get(scores: dict, path: tuple[str, ...]) -> float | None:
    cur: Any = scores
    for key in path:
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return float(cur) if isinstance(cur, int | float) else None


def summarise(results: dict[str, dict[Any, dict]]) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """``{mode: {column: {"mean", "std", "n"}}}`` over the seeds of each mode."""
    table: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for mode, per_seed in results.items():
        row = {}
        for col, path in COLUMNS:
            vals = [v for v in (_get(sc, path) for sc in per_seed.values()) if v is not None]
            row[col] = {
                "mean": statistics.fmean(vals) if vals else None,
                "std": statistics.stdev(vals) if len(vals) > 1 else None,
                "n": len(vals),
            }
        table[mode] = row
    return table


def _cell(c: dict) -> str:
    if c["mean"] is None:
        return "–"
    return f"{c['mean']:.1f}" + (f" ± {c['std']:.1f}" if c["std"] is not None else "")


def to_markdown(table: dict, seeds: list[int]) -> str:
    head = "| mode | " + " | ".join(c for c, _ in COLUMNS) + " |"
    sep = "|---|" + "---|" * len(COLUMNS)
    lines = [head, sep]
    for mode, row in table.items():
        label = MODES[mode].label if mode in MODES else mode
        lines.append(f"| {label} | " + " | ".join(_cell(row[c]) for c, _ in COLUMNS) + " |")
    spread = "mean ± standard deviation over" if len(seeds) > 1 else "one run,"
    if any(mode not in MODES for mode in table):
        lines.append("")
        lines.append("The reference row answers every item of a task with that task's most frequent training "
                     "answer, ignoring the image: a model at that level has learned answer priors, not to look.")
    lines.append("")
    lines.append(f"Accuracy / F1 in %, {spread} seed(s) {', '.join(map(str, seeds))}.")
    return "\n".join(lines)


def plot_bars(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(table)
    cols = [c for c, _ in COLUMNS]
    width = 0.8 / max(len(modes), 1)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(cols)), 4))
    for i, mode in enumerate(modes):
        means = [table[mode][c]["mean"] or 0.0 for c in cols]
        errs = [table[mode][c]["std"] or 0.0 for c in cols]
        xs = [j + (i - (len(modes) - 1) / 2) * width for j in range(len(cols))]
        ax.bar(xs, means, width, yerr=errs, capsize=2, label=MODES[mode].label if mode in MODES else mode)
    ax.set_xticks(range(len(cols)), cols, rotation=20, ha="right")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    ax.set_title("AKI on synthetic vision-centric tasks")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_unlock_curve(table: dict, path: Path, column: str = "CV-Bench overall") -> bool:
    """Score against the unlocked fraction (paper Fig. 10), when the unlock modes were run."""
    points = []
    for mode, row in table.items():
        m = MODES.get(mode)
        if m is None or m.sft_rule != "mma" or row[column]["mean"] is None:
            continue
        frac = float(m.sft_rule_options.get("unlock_fraction", 1.0))
        points.append((100 * frac, row[column]["mean"], row[column]["std"] or 0.0))
    if len(points) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points.sort()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o")
    ax.set_xlabel("image->question pairs unlocked (%)")
    ax.set_ylabel(f"{column} (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_report(results: dict, seeds: list[int], out: Path, seconds: float | None = None) -> str:
    """Write ``results.md``, ``results.json``, ``results.png`` (+ ``unlock_curve.png``); return the markdown."""
    table = summarise(results)
    md = to_markdown(table, seeds)
    verdict = None
    if "mma" in table and "causal" in table:
        from aki.experiments.verdict import compare_rules, verdict_text

        verdict = verdict_text(compare_rules(table, "mma", "causal"))
        md += "\n\n" + verdict
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(md + "\n")
    payload = {"table": table, "seeds": seeds, "per_seed": results, "seconds": seconds, "verdict": verdict}
    (out / "results.json").write_text(json.dumps(payload, indent=2, default=_json_default))
    plot_bars(table, out / "results.png")
    plot_unlock_curve(table, out / "unlock_curve.png")
    return md


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    return str(x)
