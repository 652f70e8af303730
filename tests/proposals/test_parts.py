"""Sharded proposal builds: parts of whole cache shards, the merge equals a serial build, bad parts are named."""

import filecmp
import os

import pytest
import torch

from objssl.cli import main
from objssl.errors import UserError
from objssl.images.shard_writer import write_shards
from objssl.images.sources import list_images
from objssl.proposals import ProposalCache, ProposalCacheError, RandomSource
from objssl.proposals.cache_builder import build_cache
from objssl.proposals.parts import build_part, merge_parts, part_range


@pytest.fixture(scope="module")
def shards(tmp_path_factory, photo_folder):
    """The 12 photos and the bad-image corpus (not a JPEG, empty, cut short) in tar shards of 5."""
    folder = tmp_path_factory.mktemp("photos_and_bad")
    for p in sorted(photo_folder.iterdir()):
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    good = (folder / "img_03.jpg").read_bytes()
    (folder / "img_03b.jpg").write_bytes(good[: len(good) // 2])
    out = tmp_path_factory.mktemp("shards")
    write_shards(list_images(str(folder)), str(out), shard_size=5)
    return out


def _same_folders(a, b):
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors, mismatch


def test_three_parts_merged_equal_one_serial_build(tmp_path, shards, capsys):
    data = str(shards / "train.txt")
    common = ["--source", "random", "--param", "n=7", "--data", data, "--shard-size", "2", "--no-progress"]
    assert main(["proposals", *common, "--out", str(tmp_path / "serial")]) == 0
    for i in (2, 0, 1):  # any order, any machine
        assert main(["proposals", *common, "--out", str(tmp_path / "parts"), "--num-shards", "3",
                     "--shard-index", str(i)]) == 0
    assert sorted(os.listdir(tmp_path / "parts")) == [f"part-0000{i}-of-00003" for i in range(3)]
    capsys.readouterr()
    assert main(["proposals", "merge", str(tmp_path / "parts"), "--out", str(tmp_path / "merged")]) == 0
    assert "merged 15 images in 8 shards" in capsys.readouterr().out
    _same_folders(tmp_path / "serial", tmp_path / "merged")  # every file, meta.json included
    merged, serial = ProposalCache(str(tmp_path / "merged")), ProposalCache(str(tmp_path / "serial"))
    assert merged.meta["summary"]["unreadable_images"] == 3
    for name in list_images(data):  # every image's boxes, looked up by its <shard>/<key> name
        assert torch.equal(merged.boxes_for(name), serial.boxes_for(name))
    # a rerun of a part resumes it: nothing is recomputed
    assert main(["proposals", *common, "--out", str(tmp_path / "parts"), "--num-shards", "3", "--shard-index", "1"]) == 0
    assert "0 computed, 3 shards reused" in capsys.readouterr().out


@pytest.fixture
def parts(tmp_path, shards):
    paths = list_images(str(shards))
    return [build_part(RandomSource(n=3), paths, str(tmp_path / "p"), count=3, index=i, shard_size=3,
                       progress=False)[0] for i in range(3)]


def test_missing_duplicated_and_foreign_parts_are_named(tmp_path, parts, shards):
    with pytest.raises(ProposalCacheError, match="1 of the 3 parts are missing: part-00001-of-00003"):
        merge_parts([parts[0], parts[2]], str(tmp_path / "m"))
    with pytest.raises(ProposalCacheError, match=f"part 2 of 3 is given twice: {parts[2]} and {parts[2]}"):
        merge_parts([*parts, parts[2]], str(tmp_path / "m"))
    other = build_part(RandomSource(n=4), list_images(str(shards)), str(tmp_path / "q"), count=3, index=1,
                       shard_size=3, progress=False)[0]
    with pytest.raises(ProposalCacheError, match=f"part {other} belongs to another build .*settings"):
        merge_parts([parts[0], other, parts[2]], str(tmp_path / "m"))
    whole = str(tmp_path / "whole")
    build_cache(RandomSource(n=3), list_images(str(shards)), whole, shard_size=3, progress=False)
    with pytest.raises(ProposalCacheError, match=f"{whole} is a whole proposal cache, not a part"):
        merge_parts([whole], str(tmp_path / "m"))
    assert not os.path.exists(tmp_path / "m" / "meta.json")


def test_a_corrupt_or_unfinished_part_is_named(tmp_path, parts):
    data = os.path.join(parts[1], "shard-00000.npy")
    raw = bytearray(open(data, "rb").read())
    raw[-1] ^= 0xFF
    open(data, "wb").write(bytes(raw))
    with pytest.raises(ProposalCacheError, match=f"{data} is corrupt"):
        merge_parts(parts, str(tmp_path / "m"))
    os.unlink(os.path.join(parts[2], "meta.json"))
    with pytest.raises(ProposalCacheError, match=f"{parts[2]} is unfinished"):
        merge_parts([parts[0], parts[2]], str(tmp_path / "m"))


def test_part_ranges_are_whole_shards_and_bad_requests_are_refused():
    assert [part_range(10, 3, 2, i) for i in range(2)] == [(0, 6), (6, 10)]  # 4 shards: 2 + 2
    assert [part_range(10, 3, 3, i) for i in range(3)] == [(0, 3), (3, 6), (6, 10)]
    with pytest.raises(UserError, match="more than the 4 cache shards"):
        part_range(10, 3, 5, 0)
    with pytest.raises(UserError, match="--shard-index must be in 0..2"):
        part_range(10, 3, 3, 3)


def test_cli_part_options_go_together(tmp_path, shards, capsys):
    assert main(["proposals", "--source", "random", "--data", str(shards), "--out", str(tmp_path / "x"),
                 "--num-shards", "2"]) == 2
    assert "--num-shards and --shard-index go together" in capsys.readouterr().err
    assert main(["proposals", "--data", str(shards), "--out", str(tmp_path / "x")]) == 2
    assert "--source is required" in capsys.readouterr().err


def test_the_parts_read_in_place_equal_the_merged_cache(tmp_path, parts, shards):
    import shutil

    from objssl.errors import DataError
    from objssl.proposals import check_coverage, open_proposals

    merge_parts(parts, str(tmp_path / "merged"))
    merged = ProposalCache(str(tmp_path / "merged"))
    whole = open_proposals(str(tmp_path / "p"))  # the folder holding the part-* folders
    assert len(whole) == len(merged) == 15
    names = list_images(str(shards))
    for i, name in enumerate(names):
        assert whole.find(name) == i
        assert torch.equal(whole.boxes_for(name), merged.boxes(i))
    check_coverage(whole, names)
    with pytest.raises(DataError, match="proposal cache parts .* has no boxes for 1 of the 16 images"):
        check_coverage(whole, [*names, "/x/unknown.jpg"])
    for p in (parts[0], parts[2]):
        shutil.copytree(p, tmp_path / "only2" / os.path.basename(p))
    with pytest.raises(ProposalCacheError, match="missing: part-00001-of-00003"):
        open_proposals(str(tmp_path / "only2"))
