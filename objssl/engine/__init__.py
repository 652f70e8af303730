"""Training engine: trainer, distributed set-up, checkpoints, optimizers and schedules."""

from objssl.engine.trainer import Trainer, TrainingDivergedError

__all__ = ["Trainer", "TrainingDivergedError"]
