"""Images in WebDataset tar shards: listing every kind of shard source, reading members, the index cache, damage."""

import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from objssl.data.dataset import ImageDataset
from objssl.errors import DataError, UserError
from objssl.images import tar_shards
from objssl.images.decode import BadImageError, load_rgb
from objssl.images.shard_writer import write_shards
from objssl.images.sources import describe_source, list_images


def _add_bad_images(folder):
    """The bad-image corpus: not a JPEG, an empty file, a JPEG cut short."""
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    good = sorted(folder.glob("img_*.jpg"))[0].read_bytes()
    (folder / "cut.jpg").write_bytes(good[: len(good) // 2])


@pytest.fixture
def photos(tmp_path, photo_folder):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted(photo_folder.iterdir())[:6]:
        (folder / p.name).write_bytes(p.read_bytes())
    _add_bad_images(folder)
    return folder


@pytest.fixture(autouse=True)
def fresh_index(monkeypatch):
    """Each test starts with no member index in memory (as a new process does)."""
    monkeypatch.setattr(tar_shards, "_INDEX", {})


def test_every_kind_of_shard_source_lists_the_same_images(tmp_path, photos):
    sources = list_images(str(photos))
    summary = write_shards(sources, str(tmp_path / "shards"), shard_size=4, prefix="tr")
    assert [os.path.basename(s) for s in summary.shards] == ["tr-000000.tar", "tr-000001.tar", "tr-000002.tar"]
    names = list_images(str(tmp_path / "shards"))
    assert names == [f"{summary.shards[i // 4]}/{i:08d}" for i in range(len(sources))]
    assert list_images(str(tmp_path / "shards" / "tr.txt")) == names
    assert list_images(str(tmp_path / "shards" / "tr-000001.tar")) == names[4:8]
    pytest.importorskip("braceexpand", reason="brace patterns need the optional extra wds (pip install objssl[wds])")
    assert list_images(str(tmp_path / "shards" / "tr-{000000..000002}.tar")) == names
    assert describe_source(str(tmp_path / "shards")).endswith(f"(3 shards) with {len(names)} images")


def test_members_decode_like_their_files_and_bad_ones_are_bad_images(tmp_path, photos):
    sources = list_images(str(photos))
    write_shards(sources, str(tmp_path / "s"), shard_size=5)
    names = list_images(str(tmp_path / "s"))
    bad = 0
    for src, name in zip(sources, names):
        try:
            expected = np.asarray(load_rgb(src))
        except BadImageError:
            with pytest.raises(BadImageError) as info:
                load_rgb(name)
            assert info.value.path == name
            bad += 1
            continue
        np.testing.assert_array_equal(np.asarray(load_rgb(name)), expected)
    assert bad == 3
    with pytest.raises(BadImageError, match="has no image member 'nope'"):
        load_rgb(f"{tmp_path}/s/train-000000.tar/nope")


def test_a_data_set_over_shards_counts_bad_members_as_skips(tmp_path, photos):
    write_shards(list_images(str(photos)), str(tmp_path / "s"), shard_size=4)
    names = list_images(str(tmp_path / "s"))
    ds = ImageDataset(names, lambda img: {"size": img.size}, min_side=8)
    samples = [ds[(i, 7)] for i in range(len(ds))]
    # sorted, the bad members come first (broken, cut, empty): drawing them skips 3, 2 and 1 files
    assert [s["skipped"] for s in samples] == [3, 2, 1] + [0] * 6
    assert [s["index"] for s in samples] == [3, 3, 3, 3, 4, 5, 6, 7, 8]



@pytest.mark.parametrize("reduced_decode", [False, True])
def test_views_made_on_the_device_from_shards_skip_bad_members_the_same_way(tmp_path, photos, reduced_decode):
    # the device path reads each member's header, draws, then decodes (reduced when allowed): the cut
    # JPEG has a good header and fails only then, and is still a counted skip with the same draws after it
    from objssl.data.collate import collate_views
    from objssl.data.device.image_views import DeviceImageViews
    from objssl.data.transforms import MultiViewTransform, ViewAugmentation

    write_shards(list_images(str(photos)), str(tmp_path / "s"), shard_size=4)
    names = list_images(str(tmp_path / "s"))
    augs = [ViewAugmentation(size=32), ViewAugmentation(size=24, blur_p=0.1, solarize_p=0.2)]
    loader = ImageDataset(names, MultiViewTransform.from_augmentations(augs), min_side=8)
    device = ImageDataset(names, DeviceImageViews(augs), min_side=8, reduced_decode=reduced_decode)
    a = [loader[(i, 7)] for i in range(len(names))]
    b = [device[(i, 7)] for i in range(len(names))]
    assert [s["skipped"] for s in b] == [s["skipped"] for s in a] == [3, 2, 1] + [0] * 6
    assert [s["index"] for s in b] == [s["index"] for s in a]
    made = DeviceImageViews(augs).device_views(collate_views(b))
    for view, expected in zip(made["views"], collate_views(a)["views"]):
        assert (view - expected).abs().mean() < 0.08


def test_the_index_is_cached_next_to_the_shard_and_rebuilt_when_stale(tmp_path, photos, monkeypatch):
    summary = write_shards(list_images(str(photos)), str(tmp_path / "s"), shard_size=100)
    shard = summary.shards[0]
    assert os.path.isfile(tar_shards.index_file(shard))
    first = tar_shards.shard_members(shard)
    monkeypatch.setattr(tar_shards, "_INDEX", {})
    monkeypatch.setattr(tar_shards, "_scan", lambda *a: pytest.fail("the cached index was not used"))
    assert tar_shards.shard_members(shard) == first
    monkeypatch.undo()
    monkeypatch.setattr(tar_shards, "_INDEX", {})
    with tarfile.open(shard, "w") as tar:  # the shard is rewritten with one member: the index is stale
        tar.add(str(sorted(photos.glob("img_*.jpg"))[0]), arcname="k1.jpg")
    assert [m.key for m in tar_shards.shard_members(shard)] == ["k1"]


def test_sharding_is_deterministic_and_never_overwrites(tmp_path, photos):
    sources = list_images(str(photos))
    a = write_shards(sources, str(tmp_path / "a"), shard_size=4)
    b = write_shards(sources, str(tmp_path / "b"), shard_size=4)
    for x, y in zip(a.shards, b.shards):
        assert open(x, "rb").read() == open(y, "rb").read()
    with pytest.raises(UserError, match="already holds shards train-"):
        write_shards(sources, str(tmp_path / "a"), shard_size=4)


def test_truncated_or_corrupt_shards_are_one_line_errors_naming_them(tmp_path, photos):
    summary = write_shards(list_images(str(photos)), str(tmp_path / "s"), shard_size=100)
    data = open(summary.shards[0], "rb").read()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=f"tar shard {cut} is truncated"):
        list_images(str(cut))
    garbage = tmp_path / "garbage.tar"  # the second member's header overwritten
    second = tar_shards._scan(summary.shards[0], (".jpg", ".png"))[1]
    header = second.offset - 512
    garbage.write_bytes(data[:header] + b"\x13" * 512 + data[header + 512:])
    with pytest.raises(DataError, match=f"tar shard {garbage} is corrupt"):
        list_images(str(garbage))
    not_tar = tmp_path / "text.tar"
    not_tar.write_bytes(b"hello" * 300)
    with pytest.raises(DataError, match=f"tar shard {not_tar} is not a readable tar"):
        list_images(str(not_tar))


def test_shard_lists_with_missing_repeated_or_odd_entries(tmp_path, photos):
    summary = write_shards(list_images(str(photos)), str(tmp_path / "s"), shard_size=4)
    lst = tmp_path / "list.txt"
    lst.write_text(f"{summary.shards[0]}\n{tmp_path}/s/gone.tar\n")
    with pytest.raises(DataError, match="1 of its 2 shards do not exist.*gone.tar"):
        list_images(str(lst))
    lst.write_text(f"{summary.shards[0]}\ns/{os.path.basename(summary.shards[0])}\n")
    with pytest.raises(DataError, match="listed twice"):
        list_images(str(lst))
    lst.write_text(f"{summary.shards[0]}\n{photos}/img_00.jpg\n")
    with pytest.raises(DataError, match="is not a .tar shard"):
        list_images(str(lst))


def test_webdataset_reads_the_shards(tmp_path, photos):
    wds = pytest.importorskip("webdataset", reason="needs the optional extra wds (pip install objssl[wds])")
    sources = list_images(str(photos))
    summary = write_shards(sources, str(tmp_path / "s"), shard_size=4)
    samples = list(wds.WebDataset(summary.shards, shardshuffle=False, empty_check=False))
    assert [s["__key__"] for s in samples] == [f"{i:08d}" for i in range(len(sources))]
    for s, src in zip(samples, sources):
        ext = os.path.splitext(src)[1][1:].lower()
        assert s[ext] == open(src, "rb").read()


def test_members_without_an_image_are_ignored(tmp_path, photos):
    shard = tmp_path / "mixed.tar"
    img = sorted(photos.glob("img_*.jpg"))[0]
    with tarfile.open(shard, "w") as tar:
        tar.add(str(img), arcname="a.jpg")
        tar.add(str(img), arcname="a.png")  # a second image of key a: the first wins
        meta = tmp_path / "b.json"
        meta.write_text("{}")
        tar.add(str(meta), arcname="b.json")
        tar.add(str(img), arcname="sub/c.d.jpg")
    assert list_images(str(shard)) == [f"{shard}/a", f"{shard}/sub/c"]
    assert Image.open(img).size == load_rgb(f"{shard}/sub/c").size
