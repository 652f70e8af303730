import pytest

from objssl.data.sampler import ResumableBatchSampler, sample_seed
from objssl.errors import ConfigError


def _flat(sampler):
    return [pair for batch in sampler for pair in batch]


def test_epoch_is_a_permutation_without_the_incomplete_batch():
    s = ResumableBatchSampler(10, 4, seed=3)
    assert s.steps_per_epoch == 2 and len(s) == 2
    pairs = _flat(s)
    idx = [i for i, _ in pairs]
    assert len(idx) == 8 and len(set(idx)) == 8 and set(idx) <= set(range(10))
    assert len({seed for _, seed in pairs}) == 8


def test_epochs_differ_and_are_reproducible():
    s = ResumableBatchSampler(10, 4, seed=3)
    e0 = _flat(s)
    s.set_epoch(1)
    e1 = _flat(s)
    assert e0 != e1
    s.set_epoch(0)
    assert _flat(s) == e0


def test_resume_mid_epoch_continues_the_same_sequence():
    s = ResumableBatchSampler(20, 4, seed=0)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start_step=3)
    assert list(s) == full[3:]


@pytest.mark.parametrize("world, accum", [(2, 1), (1, 2), (2, 2), (4, 1)])
def test_ranks_and_micro_batches_partition_the_global_batch(world, accum):
    """Concatenating every rank's micro-batches of a step gives the 1-process batch, same seeds."""
    one = list(ResumableBatchSampler(16, 8, seed=5))
    per_rank = [list(ResumableBatchSampler(16, 8, seed=5, rank=r, world_size=world, accum_steps=accum))
                for r in range(world)]
    for step in range(len(one)):
        merged = []
        for micro in range(accum):
            for r in range(world):
                merged += per_rank[r][step * accum + micro]
        assert merged == one[step]


def test_bad_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="divisible"):
        ResumableBatchSampler(16, 6, world_size=4)
    with pytest.raises(ConfigError, match="fewer than one batch"):
        ResumableBatchSampler(3, 4)


def test_sample_seed_is_stable_and_spread():
    assert sample_seed(0, 0, 0) == sample_seed(0, 0, 0)
    seeds = {sample_seed(s, e, p) for s in range(3) for e in range(3) for p in range(50)}
    assert len(seeds) == 450 and all(0 <= x < 2**63 for x in seeds)
