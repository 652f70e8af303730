"""Training engine: the trainer (:mod:`~objssl.engine.trainer`), built from setup, build, loop,
run_log, progress, resume, run_folder and signals modules, plus optimizers and schedules."""

from objssl.engine.trainer import Trainer, TrainingDivergedError

__all__ = ["Trainer", "TrainingDivergedError"]
