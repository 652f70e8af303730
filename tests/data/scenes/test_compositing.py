"""One scene: visible masks are disjoint, boxes are their extents, the topmost object shows."""

from __future__ import annotations

import numpy as np

from objssl.data import demo_images
from objssl.data.scenes.backgrounds import load_backgrounds
from objssl.data.scenes.catalogue import discover_categories, load_catalogue
from objssl.data.scenes.compositing import DIFFICULT_BELOW, compose_scene

from .conftest import SHAPES


def _inputs(root):
    cat = load_catalogue(discover_categories(str(root)), str(root), max_side=48)
    return cat, load_backgrounds(demo_images()[:2])


def test_instances_are_disjoint_boxed_and_show_their_own_colour(cutout_root):
    cat, pool = _inputs(cutout_root)
    colours = [np.array(SHAPES[name][1]) for name in cat.names]
    seen_difficult = seen_occluded = 0
    for seed in range(20):
        scene = compose_scene(np.random.default_rng(seed), cat, pool, size=64, min_objects=3, max_objects=5)
        assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.uint8
        assert len(scene.instances) <= 5
        union = np.zeros((64, 64), int)
        for inst in scene.instances:
            union += inst.mask
            ys, xs = np.nonzero(inst.mask)
            assert inst.box == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            assert 0 < inst.visibility <= 1 and inst.difficult == (inst.visibility < DIFFICULT_BELOW)
            # the pixels called visible show this object's colour, not what lies below or above it
            close = np.abs(scene.image[inst.mask].astype(int) - colours[inst.category]).max(axis=1) <= 60
            assert close.mean() > 0.8, (seed, inst.category, close.mean())
            seen_difficult += inst.difficult
            seen_occluded += inst.visibility < 1
        assert union.max() <= 1  # visible masks never overlap
    assert seen_occluded and seen_difficult  # occlusion, heavy occlusion included, does happen


def test_the_same_generator_state_gives_the_same_scene(cutout_root):
    cat, pool = _inputs(cutout_root)
    a = compose_scene(np.random.default_rng([3, 1, 7]), cat, pool, size=64, min_objects=2, max_objects=4)
    b = compose_scene(np.random.default_rng([3, 1, 7]), cat, pool, size=64, min_objects=2, max_objects=4)
    c = compose_scene(np.random.default_rng([4, 1, 7]), cat, pool, size=64, min_objects=2, max_objects=4)
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)
    assert [i.box for i in a.instances] == [i.box for i in b.instances]
