"""The paper's training modes (Table 1, Table 2, Fig. 10) as (pre-training, instruction-tuning) recipes.

A mode names how each stage orders the input and which attention rule it uses. Pre-training runs
that two modes share (same order, rule and seed) are run once and reused, exactly as the paper
fine-tunes its SFT variants from one PT checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Mode:
    """One row of the results table."""

    name: str
    label: str
    pt_order: str = "I&T"
    pt_rule: str = "causal"
    sft_order: str = "I&T"
    sft_rule: str = "causal"
    sft_rule_options: dict[str, Any] = field(default_factory=dict)

    @property
    def eval_order(self) -> str:
        """The input order at evaluation: the one the model was last trained on."""
        return "T&I" if self.sft_order == "T&I" else "I&T"

    @property
    def pt_key(self) -> str:
        """Pre-training runs are shared between modes with equal keys."""
        return f"pt-{self.pt_order.replace('&', '')}-{self.pt_rule}"


MODES: dict[str, Mode] = {
    m.name: m
    for m in [
        Mode("causal", "(I&T)PT + (I&T)SFT, causal"),
        Mode("reversed", "(T&I)PT + (T&I)SFT, causal", pt_order="T&I", sft_order="T&I"),
        Mode("dot", "DOT (T&I then I&T in each stage)", pt_order="dot", sft_order="dot"),
        Mode("mixed", "MA (mixed attention)", sft_rule="mixed"),
        Mode("cca", "CCA (concentric causal attention)", pt_rule="cca", sft_rule="cca"),
        Mode("mma", "MMA (ours)", sft_rule="mma"),
        *[
            Mode(f"mma@{int(f * 100)}", f"MMA, {int(f * 100)}% unlocked", sft_rule="mma",
                 sft_rule_options={"unlock_fraction": f})
            for f in (0.0, 0.1, 0.3, 0.5)
        ],
    ]
}
"""Every mode by name; ``mma@N`` unlocks N % of the image->question pairs (paper App. E.4)."""

QUICKSTART_MODES = ("causal", "mma")
REPRODUCE_MODES = ("causal", "reversed", "dot", "mixed", "cca", "mma", "mma@0", "mma@10", "mma@30", "mma@50")


def get_modes(names: list[str] | tuple[str, ...]) -> list[Mode]:
    unknown = [n for n in names if n not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; choose from {sorted(MODES)}.")
    return [MODES[n] for n in names]
