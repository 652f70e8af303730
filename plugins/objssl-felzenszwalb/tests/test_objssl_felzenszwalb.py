"""The felzenszwalb plugin: entry point, boxes equal the segments' bounding boxes, parameters."""

import numpy as np
import pytest
import torch

from objssl.data import demo_images, load_rgb
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


def test_parameters_and_cache_key():
    from objssl_felzenszwalb import Felzenszwalb

    a = Felzenszwalb()
    assert a.cache_key().startswith("felzenszwalb-1-")
    assert a.cache_key() == Felzenszwalb(scales=(1000, 300, 100)).cache_key()  # order-free
    assert a.cache_key() != Felzenszwalb(sigma=0.5).cache_key()
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
