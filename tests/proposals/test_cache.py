"""The proposal cache: compact shards, O(1) lookup, resume, checksums, fallbacks, the CLI."""

import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from objssl.cli import main
from objssl.images.decode import load_rgb
from objssl.images.sources import list_images
from objssl.proposals import ProposalCache, ProposalCacheError, ProposalSource, Proposals, RandomSource
from objssl.proposals import cache_builder as cache_mod
from objssl.proposals import cache_format
from objssl.proposals.cache_format import FLAG_EMPTY, FLAG_FALLBACK, FLAG_UNREADABLE
from objssl.proposals.cache_builder import build_cache


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """8 real photos of different sizes (scikit-image CC0 photos)."""
    from skimage import data

    root = tmp_path_factory.mktemp("cache_photos")
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for i in range(8):
        img = Image.fromarray(photos[i % 4]).resize((120 + 20 * i, 90 + 10 * i))
        sub = root / ("a" if i < 4 else "b")
        sub.mkdir(exist_ok=True)
        img.save(sub / f"p{i}.jpg", quality=92)
    return root


@pytest.fixture(scope="module")
def paths(folder):
    return list_images(str(folder))


class NoBoxes(ProposalSource):
    name = "test_no_boxes"

    def propose(self, image):
        return Proposals(torch.zeros(0, 4))


def test_boxes_match_the_source_and_lookup_is_by_path(tmp_path, paths):
    src = RandomSource(n=100)
    summary = build_cache(src, paths, str(tmp_path / "c"), shard_size=3, progress=False)
    cache = ProposalCache(str(tmp_path / "c"))
    assert len(cache) == len(paths) == summary.images == summary.computed
    assert cache.source == "random" and cache.cache_key == src.cache_key()
    for i, p in enumerate(paths):
        image = np.array(load_rgb(p))
        expected = src(image).boxes
        got = cache.boxes_for(p)
        assert got.dtype == torch.float32 and got.shape == expected.shape == (100, 4)
        assert (got - expected).abs().max() <= 0.5  # stored as rounded int16 pixels
        assert cache.image_size(i) == image.shape[:2]
        assert torch.equal(cache.boxes(i), got)
    assert summary.boxes_per_image == 100 and summary.zero_box_images == 0
    # compact: 100 boxes an image in well under 2 KB (int16 boxes + index)
    assert summary.bytes_per_image <= 2048
    on_disk = sum(os.path.getsize(tmp_path / "c" / n) for n in os.listdir(tmp_path / "c"))
    assert on_disk / len(paths) < 100 * 8 + 1200  # boxes + per-file overheads of a tiny cache


def test_max_side_boxes_are_in_original_pixels(tmp_path, paths):
    src = RandomSource(n=20)
    build_cache(src, paths, str(tmp_path / "c"), max_side=64, progress=False)
    cache = ProposalCache(str(tmp_path / "c"))
    for p in paths:
        full = load_rgb(p)
        w, h = full.size
        f = 64 / max(w, h)
        small = full.resize((round(w * f), round(h * f)), Image.BILINEAR)
        expected = src(np.array(small)).boxes * torch.tensor([w / small.width, h / small.height] * 2)
        assert (cache.boxes_for(p) - expected).abs().max() <= 0.5
        assert cache.boxes_for(p)[:, 2].max() > 64  # scaled back beyond the small image


def test_parallel_build_equals_serial(tmp_path, paths):
    src = RandomSource(n=30)
    build_cache(src, paths, str(tmp_path / "serial"), shard_size=3, progress=False)
    s = build_cache(src, paths, str(tmp_path / "par"), shard_size=3, workers=2, progress=False)
    a, b = ProposalCache(str(tmp_path / "serial")), ProposalCache(str(tmp_path / "par"))
    assert s.computed == len(paths)
    for i in range(len(paths)):
        assert torch.equal(a.boxes(i), b.boxes(i))


def test_killed_build_resumes_and_skips_finished_shards(tmp_path, paths, monkeypatch):
    src, out = RandomSource(n=40), str(tmp_path / "c")
    real_write = cache_mod._write_shard
    written = []

    def crash_after_two(out_, s, *args):
        if len(written) == 2:
            raise KeyboardInterrupt  # the run is killed while computing the third shard
        real_write(out_, s, *args)
        written.append(s)

    monkeypatch.setattr(cache_mod, "_write_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_cache(src, paths, out, shard_size=2, progress=False)
    with pytest.raises(ProposalCacheError, match="unfinished"):
        ProposalCache(out)
    monkeypatch.setattr(cache_mod, "_write_shard", real_write)
    summary = build_cache(src, paths, out, shard_size=2, progress=False)
    assert summary.shards_reused == 2 and summary.computed == len(paths) - 4
    build_cache(src, paths, str(tmp_path / "clean"), shard_size=2, progress=False)
    a, b = ProposalCache(out), ProposalCache(str(tmp_path / "clean"))
    for i in range(len(paths)):
        assert torch.equal(a.boxes(i), b.boxes(i))


def test_corrupt_shard_is_named_and_rebuilt(tmp_path, paths):
    src, out = RandomSource(n=10), str(tmp_path / "c")
    build_cache(src, paths, out, shard_size=3, progress=False)
    shard = os.path.join(out, "shard-00001.npy")
    raw = bytearray(open(shard, "rb").read())
    raw[-3] ^= 0xFF
    open(shard, "wb").write(bytes(raw))
    with pytest.raises(ProposalCacheError, match="shard-00001.npy is corrupt"):
        ProposalCache(out)
    summary = build_cache(src, paths, out, shard_size=3, progress=False)
    assert summary.computed == 3 and summary.shards_reused == 2
    ProposalCache(out).verify()


def test_other_settings_in_the_same_folder_are_refused(tmp_path, paths):
    out = str(tmp_path / "c")
    build_cache(RandomSource(n=10), paths, out, progress=False)
    with pytest.raises(ProposalCacheError, match="different cache_key"):
        build_cache(RandomSource(n=11), paths, out, progress=False)
    with pytest.raises(ProposalCacheError, match="different images_sha256"):
        build_cache(RandomSource(n=10), paths[:3], out, progress=False)
    with pytest.raises(ProposalCacheError, match="built by random-1-"):
        ProposalCache(out).check_source(RandomSource(n=11))


def test_zero_box_images_get_the_documented_fallback(tmp_path, paths):
    s = build_cache(NoBoxes(), paths[:3], str(tmp_path / "rand"), progress=False)
    cache = ProposalCache(str(tmp_path / "rand"))
    assert s.zero_box_images == 3
    for i in range(3):
        assert cache.flags(i) == FLAG_FALLBACK
        assert len(cache.boxes(i)) == cache_format.FALLBACK_BOXES
    s = build_cache(NoBoxes(), paths[:3], str(tmp_path / "none"), fallback="none", progress=False)
    cache = ProposalCache(str(tmp_path / "none"))
    assert s.zero_box_images == 3 and cache.flags(0) == FLAG_EMPTY and cache.boxes(0).shape == (0, 4)


def test_unreadable_images_are_counted_not_fatal(tmp_path, folder):
    root = tmp_path / "data"
    shutil.copytree(folder, root)
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    paths = list_images(str(root))
    summary = build_cache(RandomSource(n=5), paths, str(tmp_path / "c"), progress=False)
    cache = ProposalCache(str(tmp_path / "c"))
    assert summary.unreadable_images == 1 and summary.images == len(paths)
    i = cache.index_of(str(root / "a" / "broken.jpg"))
    assert cache.flags(i) == FLAG_UNREADABLE and cache.boxes(i).shape == (0, 4)
    assert any("broken.jpg" in e for e in summary.unreadable_examples)


def test_lookup_after_the_data_moved_and_missing_images(tmp_path, paths, folder):
    build_cache(RandomSource(n=5), paths, str(tmp_path / "c"), progress=False)
    cache = ProposalCache(str(tmp_path / "c"))
    moved = "/elsewhere/b/" + os.path.basename(paths[5])
    assert torch.equal(cache.boxes_for(moved), cache.boxes(5))
    with pytest.raises(KeyError, match="no entry for image /x/unknown.jpg"):
        cache.boxes_for("/x/unknown.jpg")
    with pytest.raises(ProposalCacheError, match="does not exist"):
        ProposalCache(str(tmp_path / "nope"))


def test_cache_pickles_for_dataloader_workers(tmp_path, paths):
    build_cache(RandomSource(n=5), paths, str(tmp_path / "c"), progress=False)
    cache = ProposalCache(str(tmp_path / "c"))
    cache.boxes(0)  # opens a shard memory map
    clone = pickle.loads(pickle.dumps(cache))
    assert torch.equal(clone.boxes_for(paths[2]), cache.boxes(2))


def test_cli_builds_and_resumes(tmp_path, folder, capsys):
    out = str(tmp_path / "c")
    args = ["proposals", "--source", "random", "--data", str(folder), "--out", out,
            "--param", "n=25", "--shard-size", "3", "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "8 images (8 computed" in text and "25.0 boxes/image" in text and "images/s" in text
    assert main(args) == 0
    assert "0 computed, 3 shards reused" in capsys.readouterr().out
    assert len(ProposalCache(out).boxes(0)) == 25


def test_cli_errors_are_one_line(tmp_path, folder, capsys):
    base = ["proposals", "--data", str(folder), "--out", str(tmp_path / "c")]
    assert main(base + ["--source", "nope"]) == 2
    assert "unknown proposal source 'nope'" in capsys.readouterr().err
    assert main(base + ["--source", "random", "--param", "n"]) == 2
    assert "--param 'n' is not of the form KEY=VALUE" in capsys.readouterr().err
    assert main(base + ["--source", "random", "--param", "n=0"]) == 2
    assert "n must be >= 1" in capsys.readouterr().err
    assert main(["proposals", "--source", "random", "--data", str(tmp_path / "missing"),
                 "--out", str(tmp_path / "c")]) == 2
    assert "missing" in capsys.readouterr().err
