"""The selective_search plugin: discovered by entry point, boxes on real photos, parameters, errors."""

import ctypes
import ctypes.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from objssl.data import demo_images
from objssl.images.decode import load_rgb
from objssl.registry import PROPOSALS

try:
    import cv2

    # the factory itself: a broken install can leave an empty cv2.ximgproc namespace behind
    HAS_XIMGPROC = callable(getattr(getattr(getattr(cv2, "ximgproc", None), "segmentation", None),
                                    "createSelectiveSearchSegmentation", None))
except ImportError:
    HAS_XIMGPROC = False

needs_ss = pytest.mark.skipif(not HAS_XIMGPROC, reason="needs cv2.ximgproc: pip install objssl[ss]")


@pytest.fixture(scope="module")
def photo():
    return np.array(load_rgb(demo_images()[2]))  # chelsea, 451x300


def _valid(boxes, h, w):
    return (
        boxes.dtype == torch.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
        and bool((boxes[:, 0] <= boxes[:, 2]).all()) and bool((boxes[:, 1] <= boxes[:, 3]).all())
        and bool((boxes >= 0).all()) and bool((boxes[:, 2] <= w).all()) and bool((boxes[:, 3] <= h).all())
    )


@needs_ss
def test_discovered_through_the_entry_point():
    from objssl_selective_search import SelectiveSearch

    assert PROPOSALS.get("selective_search") is SelectiveSearch
    assert PROPOSALS.plugin_origin("selective_search").startswith("objssl-selective-search:")


@needs_ss
def test_boxes_on_a_real_photo_fast_vs_quality(photo):
    from objssl_selective_search import SelectiveSearch

    h, w = photo.shape[:2]
    fast = SelectiveSearch(mode="fast", max_side=200)(photo).boxes
    quality = SelectiveSearch(mode="quality", max_side=200)(photo).boxes
    assert _valid(fast, h, w) and _valid(quality, h, w)
    assert len(fast) > 20
    assert len(quality) > len(fast)  # quality runs more strategies on more colour spaces
    # boxes are in original pixels: the search ran at 200 px but boxes reach the 451-px border
    assert fast[:, 2].max() > 300


@needs_ss
def test_equals_opencv_run_by_hand(photo):
    """The plugin adds only colour order, resizing and xywh->xyxy around OpenCV's own search."""
    from objssl_selective_search import SelectiveSearch

    h, w = photo.shape[:2]
    small = cv2.resize(cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), (200, round(h * 200 / w)), interpolation=cv2.INTER_AREA)
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(small)
    ss.switchToSelectiveSearchFast()
    ctypes.CDLL(ctypes.util.find_library("c")).srand(ctypes.c_uint(7))  # OpenCV ranks with C rand()
    rects = ss.process().astype(np.float32)
    sx, sy = w / small.shape[1], h / small.shape[0]
    expected = np.stack([rects[:, 0] * sx, rects[:, 1] * sy, (rects[:, 0] + rects[:, 2]) * sx,
                         (rects[:, 1] + rects[:, 3]) * sy], axis=1)
    got = SelectiveSearch(mode="fast", max_side=200, max_boxes=50, seed=7)(photo).boxes
    np.testing.assert_allclose(got.numpy(), expected[:50], rtol=0, atol=1e-3)


@needs_ss
def test_order_is_reproducible(photo):
    from objssl_selective_search import SelectiveSearch

    src = SelectiveSearch(mode="fast", max_side=160, max_boxes=40)
    a = src(photo).boxes
    SelectiveSearch(mode="fast", max_side=160, seed=3)(photo)  # another draw in between
    assert torch.equal(a, src(photo).boxes)  # the first N (a ranking) is the same every time
    other = SelectiveSearch(mode="fast", max_side=160, max_boxes=40, seed=3)(photo).boxes
    assert not torch.equal(a, other)


@needs_ss
def test_max_side_makes_boxes_scale_with_the_image(photo):
    from objssl_selective_search import SelectiveSearch

    small = photo[:150, :200].copy()
    big = small.repeat(2, axis=0).repeat(2, axis=1)  # 2x nearest: area-downscaling restores `small`
    src = SelectiveSearch(mode="fast", max_side=200)
    a, b = src(small).boxes, src(big).boxes  # `big` is searched at 200 px, i.e. on `small` itself
    assert len(a) > 10
    assert torch.equal(b, 2 * a)


@needs_ss
def test_parameters_and_cache_key():
    from objssl_selective_search import SelectiveSearch

    key = SelectiveSearch(mode="fast").cache_key()
    assert key.startswith("selective_search-1-")
    assert key == SelectiveSearch(mode="fast", threads=2).cache_key()  # threads do not change boxes
    assert key != SelectiveSearch(mode="quality").cache_key()
    assert key != SelectiveSearch(mode="fast", max_side=300).cache_key()
    assert key == SelectiveSearch(mode="fast").cache_key()  # a fresh instance: the same key

    class NextVersion(SelectiveSearch):
        version = "2"

    assert NextVersion(mode="fast").cache_key() == key.replace("-1-", "-2-", 1)
    for kwargs, word in [({"mode": "slow"}, "mode"), ({"max_side": 4}, "max_side"),
                         ({"max_boxes": 0}, "max_boxes"), ({"threads": 0}, "threads")]:
        with pytest.raises(ValueError, match=word):
            SelectiveSearch(**kwargs)
    with pytest.raises(ValueError, match="uint8"):
        SelectiveSearch()(np.zeros((20, 20, 3), np.float32))


@needs_ss
def test_missing_ximgproc_is_explained(monkeypatch):
    import types

    import objssl_selective_search as plugin

    plain = types.SimpleNamespace(__version__="5.0.0")  # opencv-python: no ximgproc at all
    stubs = types.SimpleNamespace(__version__="5.0.0", ximgproc=types.SimpleNamespace(
        segmentation=types.ModuleType("cv2.ximgproc.segmentation")))  # leftover typing-stub folder
    for fake in (plain, stubs):
        monkeypatch.setitem(sys.modules, "cv2", fake)
        with pytest.raises(ImportError, match="force-reinstall --no-deps opencv-contrib-python-headless"):
            plugin.ximgproc_segmentation()


@needs_ss
def test_cli_names_the_repair_when_opencv_lost_ximgproc(tmp_path):
    """A cv2 without ximgproc (plain opencv-python over contrib): one-line error with the repair."""
    fake = tmp_path / "site" / "cv2"
    (fake / "ximgproc" / "segmentation").mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "5.0.0"\n')
    (fake / "ximgproc" / "segmentation" / "__init__.pyi").write_text("")  # what such installs leave
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-m", "objssl.cli", "proposals", "--source", "selective_search",
         "--out", str(tmp_path / "c"), "--no-progress"], capture_output=True, text=True, env=env,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "objssl-selective-search" in out.stderr
    assert "pip install --force-reinstall --no-deps opencv-contrib-python-headless" in out.stderr


@needs_ss
def test_cli_lists_and_caches_with_workers(tmp_path):
    env = {**os.environ}
    out = subprocess.run([sys.executable, "-m", "objssl.cli", "list", "proposals"],
                         capture_output=True, text=True, env=env, check=True)
    line = next(x for x in out.stdout.splitlines() if x.strip().startswith("selective_search"))
    assert "objssl-selective-search" in line and "ok" in line
    cache, images = tmp_path / "ss", demo_images()[:4]
    (tmp_path / "list.txt").write_text("\n".join(images) + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "objssl.cli", "proposals", "--source", "selective_search", "--out", str(cache),
         "--data", str(tmp_path / "list.txt"), "--workers", "2", "--max-side", "160",
         "--param", "max_boxes=100", "--no-progress"],
        capture_output=True, text=True, env=env,
    )
    assert out.returncode == 0, out.stderr
    from objssl.proposals import ProposalCache

    c = ProposalCache(str(cache))
    assert len(c) == len(images) and c.source == "selective_search"
    for i, p in enumerate(images):
        h, w = c.image_size(i)
        boxes = c.boxes_for(p)
        assert 0 < len(boxes) <= 100 and _valid(boxes, h, w)
    env["OBJSSL_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    out = subprocess.run([sys.executable, "-m", "objssl.cli", "list", "proposals"],
                         capture_output=True, text=True, env=env, check=True)
    assert "selective_search" not in out.stdout


@needs_ss
def test_keeps_the_proposal_source_contract():
    from objssl_selective_search import SelectiveSearch

    from objssl.testing import check_proposal_source

    # quality mode is a different key; max_side=200 keeps the two photos quick
    passed = check_proposal_source(SelectiveSearch, max_side=200, other_params={"mode": "quality", "max_side": 200})
    assert "cache_key parameter-sensitive" in passed and "same boxes after pickling" in passed


@needs_ss
def test_single_mode_is_soco_search_deterministic_and_not_fast(photo):
    from objssl_selective_search import SelectiveSearch

    h, w = photo.shape[:2]
    small = photo[::2, ::2].copy()  # 226x150: keeps the full-resolution search quick
    single = SelectiveSearch(mode="single", max_side=None)
    a = single(small).boxes
    assert _valid(a, *small.shape[:2]) and len(a) > 5
    assert torch.equal(a, single(small).boxes)  # the same boxes, in the same order, on a repeat
    assert torch.equal(a, SelectiveSearch(mode="single", max_side=None)(small).boxes)  # and a fresh instance
    seeded = SelectiveSearch(mode="single", max_side=None, seed=5)
    assert torch.equal(seeded(small).boxes, seeded(small).boxes)
    fast = SelectiveSearch(mode="fast", max_side=None)(small).boxes
    assert {tuple(b) for b in a.tolist()} != {tuple(b) for b in fast.tolist()}
    # a finer segmentation (smaller k, min_size) starts from more regions: more boxes
    finer = SelectiveSearch(mode="single", max_side=None, k=100, min_size=20)(small).boxes
    assert len(finer) > len(a)
    # it is OpenCV's search with one graph segmentation and the four grouping strategies, run by hand
    seg = cv2.ximgproc.segmentation
    ss = seg.createSelectiveSearchSegmentation()
    ss.setBaseImage(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    ss.clearImages()
    ss.addImage(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    ss.clearGraphSegmentations()
    ss.addGraphSegmentation(seg.createGraphSegmentation(0.9, 300, 100))
    ss.clearStrategies()
    ss.addStrategy(seg.createSelectiveSearchSegmentationStrategyMultiple(
        seg.createSelectiveSearchSegmentationStrategyColor(), seg.createSelectiveSearchSegmentationStrategyTexture(),
        seg.createSelectiveSearchSegmentationStrategySize(), seg.createSelectiveSearchSegmentationStrategyFill()))
    rects = ss.process().astype(np.float32)
    by_hand = {(x, y, x + bw, y + bh) for x, y, bw, bh in rects.tolist()}
    assert {tuple(b) for b in a.tolist()} == by_hand


@needs_ss
def test_single_mode_parameters_and_cache_key():
    from objssl_selective_search import SelectiveSearch

    key = SelectiveSearch(mode="single").cache_key()
    assert key == SelectiveSearch(mode="single", sigma=0.9, k=300, min_size=100).cache_key()  # SoCo's defaults
    assert key != SelectiveSearch(mode="single", k=200).cache_key()
    assert key != SelectiveSearch(mode="single", sigma=0.5).cache_key()
    assert key != SelectiveSearch(mode="single", max_side=None).cache_key()
    assert SelectiveSearch(mode="single").params()["min_size"] == 100
    assert "sigma" not in SelectiveSearch(mode="fast").params()  # fast caches keep their keys
    for kwargs, word in [({"sigma": 0}, "sigma"), ({"k": -1}, "k must"), ({"min_size": 0}, "min_size")]:
        with pytest.raises(ValueError, match=word) as err:
            SelectiveSearch(mode="single", **kwargs)
        assert len(str(err.value).splitlines()) == 1
    with pytest.raises(ValueError, match="sigma applies to mode=single only"):
        SelectiveSearch(mode="fast", sigma=0.9)
    with pytest.raises(ValueError, match="k, min_size apply to mode=single only"):
        SelectiveSearch(mode="quality", k=300, min_size=100)
