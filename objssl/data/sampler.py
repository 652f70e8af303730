"""A deterministic, resumable, distributed batch sampler.

Every sample drawn gets its own seed, derived from ``(seed, epoch, position in the epoch)``. The
dataset seeds the augmentation RNG with it, so:

* a run resumed in the middle of an epoch sees exactly the samples and views it would have seen;
* one process with global batch B and N processes with B/N each see the same samples with the
  same views (rank r takes the r-th contiguous slice of every global batch).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from objssl.errors import ConfigError

__all__ = ["ResumableBatchSampler", "sample_seed"]

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads nearby seeds apart


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one sample, stable across runs, world sizes and worker counts."""
    x = (seed * 1_000_003 + epoch) * _MIX + position
    x ^= x >> 31
    return (x * _MIX) & 0x7FFF_FFFF_FFFF_FFFF


class ResumableBatchSampler:
    """Yields micro-batches of ``(index, sample_seed)`` pairs for one rank.

    Args:
        num_samples: dataset length.
        global_batch_size: samples per optimizer step, over all ranks and accumulation steps.
        accum_steps: micro-batches per optimizer step (gradient accumulation).
        rank, world_size: this process's place in the job.
        seed: base seed of the run.

    Each epoch is a fresh permutation (seeded by ``seed`` and the epoch); the last incomplete
    global batch is dropped. ``set_epoch(epoch, start_step)`` positions the sampler, in optimizer
    steps, inside that epoch.
    """

    def __init__(
        self,
        num_samples: int,
        global_batch_size: int,
        *,
        accum_steps: int = 1,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        per_step = world_size * accum_steps
        if global_batch_size % per_step:
            raise ConfigError(
                f"train.batch_size={global_batch_size} must be divisible by world_size*accum_steps={per_step}"
            )
        if num_samples < global_batch_size:
            raise ConfigError(
                f"the data set has {num_samples} images, fewer than one batch of {global_batch_size}: "
                "lower train.batch_size"
            )
        self.num_samples = num_samples
        self.global_batch_size = global_batch_size
        self.accum_steps = accum_steps
        self.rank, self.world_size = rank, world_size
        self.micro_batch_size = global_batch_size // per_step
        self.seed = seed
        self.epoch = 0
        self.start_step = 0

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples // self.global_batch_size

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accum_steps

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        order = torch.randperm(self.num_samples, generator=g).tolist()
        gb, mb = self.global_batch_size, self.micro_batch_size
        for step in range(self.start_step, self.steps_per_epoch):
            for micro in range(self.accum_steps):
                # global batch → accumulation slices → rank slices, all contiguous
                first = step * gb + (micro * self.world_size + self.rank) * mb
                yield [(order[p], sample_seed(self.seed, self.epoch, p)) for p in range(first, first + mb)]
