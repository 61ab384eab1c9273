"""The language model of the offline experiments: a tiny decoder taught in words first.

The paper's decoder is a pretrained, instruction-tuned LLM that already answers questions about a
scene it is told; a decoder trained from scratch inside the quickstart has not learned that yet, and
cannot learn it and to see within the budget (docs/quickstart-lab.md, items 34-39). No pretrained
LLM can be downloaded here, so the project teaches its own (``aki pretrain-llm``): the scenes'
questions with each image replaced by the scene described in words. It ships one
(:data:`PRETRAINED_LANGUAGE_MODEL`) that the quickstart starts from by default, as AKI starts from
Phi-3.5 (``--random-language-model`` starts from a random decoder instead). Over three seeds the VLM
built on it counts and finds objects better than one on a random decoder and ties it elsewhere
(docs/quickstart-lab.md, items 40-43).
"""

from __future__ import annotations

from pathlib import Path

PRETRAINED_LANGUAGE_MODEL = Path(__file__).parent / "pretrained" / "synth-llama-tiny"
"""The decoder shipped with aki; its folder records the command and seed that made it."""

__all__ = ["PRETRAINED_LANGUAGE_MODEL"]
