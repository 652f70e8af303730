import logging
import os
import shutil

import numpy as np
import pytest
import torch

from objssl.correspondence import format as fmt
from objssl.correspondence.runner import CorrespondenceSettings, rank_shards, run_correspondence, shard_ranges
from objssl.correspondence.store import CorrespondenceStore

SETTINGS = CorrespondenceSettings(shard_size=2, crop_size=32, pair_ratio=0.3, embed_batch_size=5,
                                  keep_embeddings=True)
K = 2


def _backbone():
    from objssl.backbones import create_backbone

    torch.manual_seed(0)
    return create_backbone("test_resnet").eval()


def prepare(folder, paths):
    """knn/ (fixed neighbours) and a grid proposal cache for ``paths``."""
    from objssl.proposals import create_source
    from objssl.proposals.cache_builder import build_cache

    n = len(paths)
    neighbours = np.array([[(i + 1) % n, (i + 2) % n] for i in range(n)])
    fmt.write_knn(folder, paths, neighbours, np.ones((n, K)))
    build_cache(create_source("grid", grids=(1, 2, 3)), paths, os.path.join(folder, "proposals"),
                fallback="none", progress=False)
    return neighbours


def _run(folder, rank=0, world=1):
    from objssl.proposals.cache_reader import ProposalCache

    with open(os.path.join(folder, "knn", "images.txt")) as f:
        images = f.read().splitlines()
    neighbours = np.load(os.path.join(folder, "knn", "neighbours.npy"))
    return run_correspondence(folder, images, neighbours, ProposalCache(os.path.join(folder, "proposals")),
                              _backbone().forward_pooled, SETTINGS, rank=rank, world=world)


WORKER = """
import sys
import torch
import torch.distributed as dist
sys.path.insert(0, {tests!r})
from test_runner import _run
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method="file://" + sys.argv[3], rank=int(sys.argv[1]), world_size=2)
try:
    _run(sys.argv[2], dist.get_rank(), dist.get_world_size())
finally:
    dist.destroy_process_group()
"""


def run_two_processes(folder, tmp_path):
    """Two processes in one gloo group (what torchrun --nproc-per-node 2 starts)."""
    import subprocess
    import sys

    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(r), folder, str(tmp_path / "init")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in range(2)]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]


def _files(folder):
    out = {}
    for root, _, names in os.walk(os.path.join(folder, "correspondence")):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def test_rank_shards_cover_every_shard_once():
    for n, world in ((7, 2), (3, 4), (10, 3)):
        got = [s for r in range(world) for s in rank_shards(n, r, world)]
        assert got == list(range(n))
    assert shard_ranges(5, 2) == [(0, 2), (2, 4), (4, 5)]


def test_two_gloo_processes_write_the_same_files_as_one(tmp_path, demo_paths, one_torch_thread):
    paths = demo_paths[:5]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    prepare(one, paths)
    shutil.copytree(one, two)
    _run(one)
    run_two_processes(two, tmp_path)
    a, b = _files(one), _files(two)
    assert sorted(a) == sorted(b) and len([n for n in a if n.endswith(".json")]) == 3 + 3 + 1
    for name in a:
        assert a[name] == b[name], name
    store = CorrespondenceStore.open(two)
    assert len(store) == 5 and sum(len(store.pairs(i, s)[2]) for i in range(5) for s in range(K)) > 0


def test_rerun_reuses_valid_shards_and_redoes_a_corrupt_one(tmp_path, demo_paths, caplog):
    folder = str(tmp_path / "s2")
    prepare(folder, demo_paths[:5])
    _run(folder)
    corr = os.path.join(folder, "correspondence")
    before = {n: os.stat(os.path.join(corr, n)).st_mtime_ns for n in os.listdir(corr) if n.endswith(".npy")}
    reference = _files(folder)
    bad = os.path.join(corr, "boxes-00001.npy")
    with open(bad, "r+b") as f:
        f.seek(-2, 2)
        f.write(b"\x00\x7f")
    with caplog.at_level(logging.WARNING):
        summary = _run(folder)
    assert "boxes-00001 is corrupt or incomplete" in caplog.text
    assert summary["boxes_shards"] == {"done": 1, "reused": 2, "redone": 1}
    assert summary["pairs_shards"] == {"done": 0, "reused": 3, "redone": 0}
    after = {n: os.stat(os.path.join(corr, n)).st_mtime_ns for n in before}
    untouched = [n for n in before if not n.startswith("boxes-00001")]
    assert all(before[n] == after[n] for n in untouched)
    assert _files(folder) == reference  # the redone shard is the same as before


def test_counts_images_without_proposals_and_boxes_failing_the_rules(tmp_path, demo_paths):
    from objssl.proposals.cache_reader import ProposalCache

    folder = str(tmp_path / "s2")
    prepare(folder, demo_paths[:4])

    class Fake:
        """Image 0: no proposals; image 1: only boxes too small for ORL's rules; others: the cache's."""

        def __init__(self, real):
            self.real = real

        def index_of(self, p):
            return self.real.index_of(p)

        def flags(self, i):
            return fmt_flag_empty if i == 0 else self.real.flags(i)

        def boxes(self, i):
            if i == 0:
                return torch.zeros(0, 4)
            if i == 1:
                return torch.tensor([[0.0, 0, 50, 50], [5, 5, 60, 70]])
            return self.real.boxes(i)

    from objssl.proposals.cache_format import FLAG_EMPTY as fmt_flag_empty

    neighbours = np.load(os.path.join(folder, "knn", "neighbours.npy"))
    with open(os.path.join(folder, "knn", "images.txt")) as f:
        images = f.read().splitlines()
    summary = run_correspondence(folder, images, neighbours, Fake(ProposalCache(os.path.join(folder, "proposals"))),
                                 _backbone().forward_pooled, SETTINGS)
    assert summary["no_proposals"] == 1 and summary["fallback_first_box"] == 1
    store = CorrespondenceStore.open(folder)
    assert store.boxes(0).shape == (0, 4)
    assert store.boxes(1).tolist() == [[0, 0, 50, 50]]  # ORL: the first raw box
    assert all(len(store.pairs(0, s)[2]) == 0 for s in range(K))
    assert len(store.pairs(1, 0)[2]) == 1  # one query box: max(1, int(0.3)) = 1 pair
    assert len(store.pairs(3, 0)[2]) == 0  # image 3's first neighbour is image 0 (no boxes)


@pytest.mark.parametrize("n_shards", [1])
def test_meta_json_is_last_and_counts_add_up(tmp_path, demo_paths, n_shards):
    folder = str(tmp_path / "s2")
    prepare(folder, demo_paths[:3])
    summary = _run(folder)
    meta = fmt.read_manifest(os.path.join(folder, "correspondence", "meta.json"))
    store = CorrespondenceStore.open(folder)
    assert meta["counts"]["boxes"] == sum(len(store.boxes(i)) for i in range(3)) == summary["boxes"]
    assert meta["counts"]["pairs"] == sum(len(store.pairs(i, s)[2]) for i in range(3) for s in range(K))
