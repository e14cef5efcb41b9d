"""Training mechanics shared by every family: the trainer, checkpoints, EMA, monitoring."""

from genlab.train.config import TrainConfig
from genlab.train.trainer import Trainer

__all__ = ["TrainConfig", "Trainer"]
