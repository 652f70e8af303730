"""Source faults: inverted boxes, a forgotten params(), unknown or misspelt parameters."""

import pickle

import numpy as np
import pytest
import torch

from objssl.cli import main
from objssl.data import demo_images
from objssl.errors import ConfigError
from objssl.images.decode import load_rgb
from objssl.proposals import (
    InvalidBoxesError,
    Proposals,
    ProposalSource,
    build_cache,
    create_source,
)


@pytest.fixture(scope="module")
def photo():
    return np.array(load_rgb(demo_images()[0]))


class Inverted(ProposalSource):
    name = "inverted_src"
    version = "1"

    def propose(self, image):
        return torch.tensor([[0.0, 0.0, 10.0, 10.0], [30.0, 5.0, 12.0, 20.0]])  # box 1: x2 < x1


def test_e_proposals_reject_inverted_and_non_finite_boxes():
    with pytest.raises(InvalidBoxesError, match=r"box 1 of 2 is inverted .*\[30.0, 5.0, 12.0, 20.0\]"):
        Proposals(torch.tensor([[0.0, 0.0, 1.0, 1.0], [30.0, 5.0, 12.0, 20.0]]))
    with pytest.raises(InvalidBoxesError, match="y2 < y1"):
        Proposals(torch.tensor([[0.0, 9.0, 1.0, 1.0]]))
    with pytest.raises(InvalidBoxesError, match="box 0 of 1 is not finite"):
        Proposals(torch.tensor([[0.0, float("nan"), 1.0, 1.0]]))
    assert len(Proposals(torch.tensor([[2.0, 2.0, 2.0, 5.0]]))) == 1  # zero width is allowed (x1 <= x2)


def test_e_a_source_returning_inverted_boxes_is_named_with_the_image(tmp_path, photo):
    h, w = photo.shape[:2]
    with pytest.raises(InvalidBoxesError, match=f"proposal source 'inverted_src' returned invalid boxes for an image of {w}x{h} px: box 1"):
        Inverted()(photo)
    path = demo_images()[0]
    with pytest.raises(InvalidBoxesError) as info:
        build_cache(Inverted(), [path], str(tmp_path / "c"), progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"proposal source 'inverted_src' returned invalid boxes for image {path}: box 1 of 2 is inverted")


class Plain(ProposalSource):
    """No params(): the cache key must still follow the constructor's arguments."""

    name = "plain_src"
    version = "1"

    def __init__(self, k=3, scale=(0.5, 1.0), *, label="x"):
        self.k, self.scale = k, scale

    def propose(self, image):
        return Proposals(torch.tensor([[0.0, 0.0, float(self.k), float(self.k)]]))


class PlainChild(Plain):
    def __init__(self, extra=1, **kwargs):
        super().__init__(**kwargs)
        self.extra = extra


def test_f_the_default_cache_key_follows_the_constructor_arguments():
    key = Plain().cache_key()
    assert Plain(k=3).cache_key() == Plain(3, (0.5, 1.0)).cache_key() == key  # defaults filled in
    assert Plain(k=4).cache_key() != key
    assert Plain(scale=(0.5, 0.9)).cache_key() != key
    assert Plain(label="y").cache_key() != key
    assert Plain(k=4).params() == {"k": 4, "scale": (0.5, 1.0), "label": "x"}
    assert pickle.loads(pickle.dumps(Plain(k=5))).cache_key() == Plain(k=5).cache_key()
    assert PlainChild(extra=2, k=3).params() == {"extra": 2, "k": 3}  # the most derived constructor
    assert PlainChild(extra=2).cache_key() != PlainChild(extra=3).cache_key()
    assert repr(Plain(k=4)) == "Plain(k=4, label='x', scale=(0.5, 1.0))"


def test_g_unknown_parameters_get_a_close_match_and_the_valid_names(capsys, tmp_path):
    with pytest.raises(ConfigError) as info:
        create_source("random", nn=3)
    assert str(info.value) == (
        "proposal source 'random': unexpected keyword parameter 'nn'; did you mean 'n'? "
        "Its parameters: n, scale, max_aspect, min_size, seed"
    )
    with pytest.raises(ConfigError, match=r"'grid': unexpected keyword parameter 'zzz'\. Its parameters: grids$"):
        create_source("grid", zzz=1)
    assert main(["proposals", "--source", "random", "--param", "max_aspcet=2", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean 'max_aspect'?" in err


def test_g_param_values_are_documented_as_yaml(capsys):
    with pytest.raises(SystemExit):
        main(["proposals", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "VALUE is read as YAML" in text and "quote to keep a string" in text
    assert "Unknown KEYs are refused" in text and "--import MODULE" in text
