"""Training engine: the trainer, optimizers and schedules."""

from objssl.engine.trainer import Trainer, TrainingDivergedError

__all__ = ["Trainer", "TrainingDivergedError"]
