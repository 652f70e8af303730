"""The plugin's own tests: the contract checker, plus what this source promises."""

import numpy as np

from objssl.testing import check_proposal_source
from objssl_edge_density import EdgeDensity


def test_keeps_the_proposal_source_contract():
    check_proposal_source(EdgeDensity, max_boxes=20)


def test_prefers_the_textured_half():
    image = np.full((120, 200, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    image[:, 100:] = rng.integers(0, 255, (120, 100, 3), dtype=np.uint8)  # edges on the right only
    best = EdgeDensity(max_boxes=1)(image).boxes[0]
    assert best[0] >= 100  # the best window lies in the textured half
