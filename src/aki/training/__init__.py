"""Training: typed configs, the DataLoader stream of steps, the loop (FSDP2 when launched by
torchrun, fp32 master weights under bf16 compute), atomic sharded (DCP) checkpoints that resume
exactly on any world size, and the leakage guard."""

from aki.training.config import ConfigError, TrainConfig, load_config
from aki.training.pipeline import SkipRateError
from aki.training.trainer import train

__all__ = ["ConfigError", "SkipRateError", "TrainConfig", "load_config", "train"]
