"""The felzenszwalb plugin: entry point, boxes equal the segments' bounding boxes, parameters."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from objssl.data import demo_images
from objssl.images.decode import load_rgb
from objssl.registry import PROPOSALS


@pytest.fixture(scope="module")
def photo():
    return np.array(load_rgb(demo_images()[4]))


def test_discovered_through_the_entry_point():
    from objssl_felzenszwalb import Felzenszwalb

    assert PROPOSALS.get("felzenszwalb") is Felzenszwalb
    assert PROPOSALS.plugin_origin("felzenszwalb").startswith("objssl-felzenszwalb:")


def test_boxes_are_the_bounding_boxes_of_the_segments(photo):
    from skimage.measure import regionprops
    from skimage.segmentation import felzenszwalb

    from objssl_felzenszwalb import Felzenszwalb

    small = photo[:120, :160].copy()  # below max_side: segmented at full resolution
    got = Felzenszwalb(scales=(200,), min_size=30)(small).boxes
    labels = felzenszwalb(small, scale=200, sigma=0.8, min_size=30)
    expected = {(r.bbox[1], r.bbox[0], r.bbox[3], r.bbox[2]) for r in regionprops(labels + 1)}
    assert {tuple(int(v) for v in b) for b in got.tolist()} == expected
    assert len(got) == len(expected)  # no duplicates
    areas = (got[:, 2] - got[:, 0]) * (got[:, 3] - got[:, 1])
    assert (areas[:-1] >= areas[1:]).all()  # one scale: ordered by area, largest first


def test_multiscale_dedup_order_and_original_pixels(photo):
    from objssl_felzenszwalb import Felzenszwalb

    h, w = photo.shape[:2]
    boxes = Felzenszwalb(scales=(100, 1000), max_side=128)(photo).boxes
    assert boxes.dtype == torch.float32 and len(boxes) > 5
    assert len({tuple(b) for b in boxes.tolist()}) == len(boxes)
    assert (boxes[:, 2] <= w + 1e-3).all() and (boxes[:, 3] <= h + 1e-3).all()
    assert boxes[:, 2].max() > 128  # scaled back from the 128-px working copy
    coarse = Felzenszwalb(scales=(1000,), max_side=128)(photo).boxes
    assert torch.equal(boxes[: len(coarse)], coarse)  # the largest scale comes first


def test_max_side_boxes_scale_with_the_image(photo):
    from objssl_felzenszwalb import Felzenszwalb

    small = photo[:150, :200].copy()
    big = small.repeat(2, axis=0).repeat(2, axis=1)  # 2x nearest: area-averaging restores `small`
    src = Felzenszwalb(scales=(300,), max_side=200)
    a, b = src(small).boxes, src(big).boxes  # `big` is segmented at 200 px, i.e. as `small`
    assert len(a) > 3
    assert torch.equal(b, 2 * a)


def test_bad_images_are_refused():
    from objssl_felzenszwalb import Felzenszwalb

    src = Felzenszwalb()
    for image, word in [(np.zeros((20, 20, 3), np.float32), "uint8"), (np.zeros((20, 20), np.uint8), "shape"),
                        (np.zeros((20, 20, 4), np.uint8), "shape"), ([[0, 0, 0]], "numpy")]:
        with pytest.raises(ValueError, match=word):
            src(image)


def test_parameters_and_cache_key():
    from objssl_felzenszwalb import Felzenszwalb

    a = Felzenszwalb()
    assert a.cache_key().startswith("felzenszwalb-2-")
    assert a.cache_key() == Felzenszwalb().cache_key()
    assert a.cache_key() == Felzenszwalb(scales=(1000, 300, 100)).cache_key()  # order-free
    for other in [Felzenszwalb(sigma=0.5), Felzenszwalb(scales=(300,)), Felzenszwalb(min_size=20),
                  Felzenszwalb(max_side=300), Felzenszwalb(max_boxes=50)]:
        assert a.cache_key() != other.cache_key()

    class NextVersion(Felzenszwalb):
        version = "3"

    assert NextVersion().cache_key() == a.cache_key().replace("-2-", "-3-", 1)
    for kwargs, word in [({"scales": ()}, "scales"), ({"sigma": -1}, "sigma"), ({"min_size": 0}, "min_size"),
                         ({"max_side": 1}, "max_side"), ({"max_boxes": 0}, "max_boxes")]:
        with pytest.raises(ValueError, match=word):
            Felzenszwalb(**kwargs)


def test_cache_build_with_the_plugin(tmp_path):
    from objssl.proposals import ProposalCache, build_cache, create_source

    src = create_source("felzenszwalb", scales=[300], max_side=96, max_boxes=40)
    paths = demo_images()[:3]
    summary = build_cache(src, paths, str(tmp_path / "c"), workers=2, progress=False)
    cache = ProposalCache(str(tmp_path / "c"))
    assert summary.zero_box_images == 0 and cache.source == "felzenszwalb"
    for p in paths:
        expected = src(np.array(load_rgb(p))).boxes
        assert (cache.boxes_for(p) - expected).abs().max() <= 0.5


def test_cli_lists_the_plugin_and_autoload_off_hides_it():
    from objssl_felzenszwalb import Felzenszwalb

    cmd = [sys.executable, "-m", "objssl.cli", "list", "proposals"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.strip().startswith("felzenszwalb"))
    assert "objssl-felzenszwalb: objssl_felzenszwalb:Felzenszwalb" in line and "ok (version 2)" in line
    env = {**os.environ, "OBJSSL_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    assert "random" in out.stdout and "felzenszwalb" not in out.stdout
    # the cache key is the same in another process (no salted hash)
    key = subprocess.run([sys.executable, "-c", "import objssl_felzenszwalb as f; print(f.Felzenszwalb().cache_key())"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert key == Felzenszwalb().cache_key()


def test_keeps_the_proposal_source_contract():
    from objssl_felzenszwalb import Felzenszwalb

    from objssl.testing import check_proposal_source

    passed = check_proposal_source(Felzenszwalb, max_side=160, other_params={"max_side": 160, "sigma": 0.5})
    assert "cache_key parameter-sensitive" in passed and "same boxes after pickling" in passed
