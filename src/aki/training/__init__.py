"""Training: typed configs, the data stream, the loop (FSDP2 when launched by torchrun),
atomic checkpoints with exact resumption, and the leakage guard."""

from aki.training.config import ConfigError, TrainConfig, load_config
from aki.training.pipeline import SkipRateError
from aki.training.trainer import train

__all__ = ["ConfigError", "SkipRateError", "TrainConfig", "load_config", "train"]
