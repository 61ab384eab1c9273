"""The vision tower of the offline experiments: pre-training on synthetic scenes, and probes.

No pretrained CLIP/SigLIP weights can be downloaded here, so the project trains its own small
``SiglipVisionModel`` (``aki pretrain-vision``) with dense per-patch supervision from the scene
generator's annotations, and ships one (:data:`PRETRAINED_TOWER`) so that the quickstart starts,
as AKI does, from a pretrained tower that stays frozen in both training stages.
"""

from __future__ import annotations

from pathlib import Path

PRETRAINED_TOWER = Path(__file__).parent / "pretrained" / "synth-siglip-tiny"
"""The tower shipped with aki; its folder records the command and seed that made it."""

__all__ = ["PRETRAINED_TOWER"]
