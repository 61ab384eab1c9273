"""Analysis of what the rules change inside a trained model (paper Sec. 4.5, App. E.3)."""

from aki.analysis.attention import (
    attention_by_segment,
    question_sensitivity,
    question_sensitivity_per_layer,
)

__all__ = ["attention_by_segment", "question_sensitivity", "question_sensitivity_per_layer"]
