"""Every registered proposal source keeps the contract (check_proposal_source), and the checker
itself catches sources that break it."""

import numpy as np
import pytest
import torch

from objssl.proposals import Proposals, ProposalSource, RandomSource, build_cache, check_proposal_source
from objssl.proposals.checks import ProposalSourceCheckError, bundled_photos
from objssl.registry import PROPOSALS, PluginLoadError


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    """A cache of the bundled photos, for the ``precomputed`` source."""
    out = str(tmp_path_factory.mktemp("contract") / "cache")
    build_cache(RandomSource(n=20), bundled_photos(), out, progress=False)
    return out


# Parameters for sources that need some (the rest are checked with their defaults).
PARAMS = {"precomputed": lambda cache: {"path": cache, "other_params": {"path": cache, "missing": "empty"}}}


@pytest.mark.parametrize("name", PROPOSALS.names())
def test_registered_source_keeps_the_contract(name, demo_cache):
    try:
        cls = PROPOSALS.get(name)
    except PluginLoadError as exc:  # e.g. selective_search without OpenCV's contrib build
        pytest.skip(f"plugin not loadable here: {exc}")
    params = PARAMS[name](demo_cache) if name in PARAMS else {}
    passed = check_proposal_source(cls, **params)
    assert "picklable" in passed and "cache_key stable" in passed and "some boxes" in passed


def test_precomputed_key_follows_its_file(demo_cache, tmp_path):
    # precomputed's parameter-sensitivity: another file is another key
    other = str(tmp_path / "other")
    build_cache(RandomSource(n=5), bundled_photos()[:2], other, progress=False)
    check_proposal_source(PROPOSALS.get("precomputed"), path=demo_cache, other_params={"path": other})


class Broken(ProposalSource):
    """Breaks most rules at once."""

    name = "broken"

    def __init__(self, n=3):
        self.n = n
        self.calls = 0

    def params(self):
        return {}  # forgets n

    def propose(self, image):
        self.calls += 1
        h, w = image.shape[:2]
        return Proposals(torch.tensor([[0.0, 0.0, w + 50.0, h / 2], [5.0, 5.0, 5.0, 9.0 + self.calls]]))


def test_the_checker_names_every_broken_rule():
    with pytest.raises(ProposalSourceCheckError) as info:
        check_proposal_source(Broken)
    text = str(info.value)
    assert text.startswith("proposal source Broken ('broken') breaks the contract:")
    for rule in ("version: set the class attribute version", "x2 > x1 and y2 > y1 on",
                 "boxes inside the", "deterministic on", "cache_key parameter-sensitive: {'n': 4}"):
        assert rule in text, rule
    assert "picklable" not in text and "name:" not in text


def test_the_checker_catches_an_unpicklable_source():
    class Holder(RandomSource):
        name = "holder"

        def __init__(self, n=5):
            super().__init__(n=n)
            self.fn = lambda x: x  # lambdas do not pickle

    with pytest.raises(ProposalSourceCheckError, match="picklable: .*drop unpicklable state in __getstate__"):
        check_proposal_source(Holder)


def test_the_checker_runs_on_given_images(tmp_path):
    from PIL import Image

    path = tmp_path / "grey.png"
    Image.fromarray(np.full((40, 60), 128, np.uint8)).save(path)
    passed = check_proposal_source(RandomSource, [str(path)], n=4)
    assert "boxes inside the 60x40 image grey.png" in passed
