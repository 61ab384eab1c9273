"""Experiments: the paper's comparisons end to end (quickstart, reproduce)."""
