"""The ProposalSource contract and the built-in sources (random, grid, precomputed)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from objssl.data import demo_images
from objssl.images.decode import load_rgb
from objssl.proposals import (
    GridSource,
    MissingProposalsError,
    PrecomputedSource,
    Proposals,
    ProposalSource,
    RandomSource,
    create_source,
    describe_sources,
    random_boxes,
)
from objssl.registry import PROPOSALS, UnknownNameError


@pytest.fixture(scope="module")
def photo():
    return np.array(load_rgb(demo_images()[0]))


def assert_valid(boxes, h, w):
    assert boxes.dtype == torch.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()


def test_builtins_registered_and_listed():
    assert {"random", "grid", "precomputed"} <= set(PROPOSALS.names())
    rows = {name: (origin, status) for name, origin, status in describe_sources()}
    assert rows["random"][0] == "built-in" and rows["random"][1].startswith("ok")


def test_create_source_errors_name_the_problem():
    with pytest.raises(UnknownNameError, match="rnadom.*Did you mean 'random'"):
        create_source("rnadom")
    with pytest.raises(ValueError, match="'random'.*unexpected keyword"):
        create_source("random", boxes=3)
    with pytest.raises(ValueError, match="scale"):
        create_source("random", scale=(0.5, 0.1))


def test_source_validates_images(photo):
    src = RandomSource(n=5)
    with pytest.raises(ValueError, match="uint8"):
        src(photo.astype(np.float32))
    with pytest.raises(ValueError, match="H×W×3"):
        src(photo[..., 0])
    with pytest.raises(ValueError, match="numpy array"):
        src(torch.from_numpy(photo))


def test_random_source_constraints_and_determinism(photo):
    h, w = photo.shape[:2]
    src = RandomSource(n=200, scale=(0.2, 0.5), max_aspect=2.0, min_size=8)
    boxes = src(photo).boxes
    assert boxes.shape == (200, 4)
    assert_valid(boxes, h, w)
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (torch.maximum(bw / bh, bh / bw) <= 2.0 + 1e-4).all()
    rel = (bw * bh).sqrt() / (w * h) ** 0.5
    assert rel.min() >= 0.2 - 1e-4 and rel.max() <= 0.5 + 1e-4
    assert torch.equal(boxes, RandomSource(n=200, scale=(0.2, 0.5), max_aspect=2.0, min_size=8)(photo).boxes)
    other = np.ascontiguousarray(photo[::-1])
    assert not torch.equal(boxes, src(other).boxes)  # seeded by the pixels, not a global seed


def test_random_boxes_inside_region_and_tiny_regions():
    gen = torch.Generator().manual_seed(0)
    b = random_boxes(100, 100, 50, within=(10, 20, 40, 90), min_size=64, generator=gen)
    assert (b[:, 0] >= 10).all() and (b[:, 1] >= 20).all() and (b[:, 2] <= 40 + 1e-4).all() and (b[:, 3] <= 90 + 1e-4).all()
    assert ((b[:, 2] - b[:, 0]) > 0).all()
    one = random_boxes(1, 1, 3)  # a 1x1 image still gets boxes
    assert one.shape == (3, 4) and (one[:, 2] <= 1).all()
    with pytest.raises(ValueError, match="empty region"):
        random_boxes(10, 10, 2, within=(5, 5, 5, 9))


def test_grid_source_tiles_the_image(photo):
    h, w = photo.shape[:2]
    boxes = GridSource(grids=(1, 2, 3))(photo).boxes
    assert boxes.shape == (14, 4)
    assert_valid(boxes, h, w)
    assert boxes[0].tolist() == [0, 0, w, h]
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    assert area[1:5].sum().item() == pytest.approx(w * h)  # the 2x2 cells cover the image once
    assert area[5:].sum().item() == pytest.approx(w * h)


def test_cache_key_depends_on_name_version_and_params():
    a, b = RandomSource(n=10), RandomSource(n=11)
    assert a.cache_key() == RandomSource(n=10).cache_key()
    assert a.cache_key() != b.cache_key()
    assert a.cache_key().startswith("random-1-")

    class Bumped(RandomSource):
        version = "2"

    assert Bumped(n=10).cache_key() != a.cache_key()
    # the same in another process (no salted hash())
    code = "from objssl.proposals import RandomSource; print(RandomSource(n=10).cache_key())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == a.cache_key()


def test_boxes_clipped_to_image_by_the_contract(photo):
    class Sloppy(ProposalSource):
        name = "sloppy"

        def propose(self, image):
            return Proposals(torch.tensor([[-5.0, -5.0, 1e5, 1e5]]))

    h, w = photo.shape[:2]
    assert Sloppy()(photo).boxes.tolist() == [[0, 0, w, h]]


def test_precomputed_reads_soco_style_mapping(tmp_path, photo):
    path = demo_images()[0]
    stem = os.path.splitext(os.path.basename(path))[0]
    (tmp_path / "boxes.json").write_text(json.dumps({stem: [[10, 20, 30, 40], [0, 0, 5, 5]]}))
    src = PrecomputedSource(str(tmp_path / "boxes.json"))
    assert src(photo, path=path).boxes.tolist() == [[10, 20, 40, 60], [0, 0, 5, 5]]
    with pytest.raises(MissingProposalsError, match="no boxes for image .*other.jpg"):
        src.boxes_for("/x/other.jpg")
    assert PrecomputedSource(str(tmp_path / "boxes.json"), missing="empty").boxes_for("/x/other.jpg").shape == (0, 4)
    with pytest.raises(ValueError, match="path="):
        src(photo)


def test_precomputed_reads_coco_json(tmp_path):
    coco = {
        "images": [{"id": 7, "file_name": "a/b.jpg", "height": 50, "width": 60}, {"id": 8, "file_name": "c.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 7, "bbox": [1, 2, 3, 4], "category_id": 1},
            {"id": 2, "image_id": 7, "bbox": [0, 0, 10, 10], "category_id": 1},
        ],
        "categories": [{"id": 1, "name": "object"}],
    }
    (tmp_path / "p.json").write_text(json.dumps(coco))
    src = PrecomputedSource(str(tmp_path / "p.json"))
    assert src.boxes_for("/data/a/b.jpg").tolist() == [[1, 2, 4, 6], [0, 0, 10, 10]]
    assert src.boxes_for("c.jpg").shape == (0, 4)


def test_precomputed_bad_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        PrecomputedSource(str(tmp_path / "none.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        PrecomputedSource(str(tmp_path / "bad.json"))
    (tmp_path / "shape.json").write_text(json.dumps({"x": [[1, 2, 3]]}))
    with pytest.raises(ValueError, match="not a list of \\[x, y, w, h\\]"):
        PrecomputedSource(str(tmp_path / "shape.json"))


def _fake_plugin_dist(root, module_body):
    """An installed-looking distribution on ``root`` declaring two objssl.proposals entry points."""
    (root / "fake_props.py").write_text(module_body)
    info = root / "fake_props-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-props\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[objssl.proposals]\nfake_boxes = fake_props:FakeBoxes\nrandom = fake_props:FakeBoxes\n"
        "fake_broken = fake_missing_module:Nope\n"
    )


def _run_cli(args, root, **env):
    environ = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **env}
    return subprocess.run([sys.executable, "-m", "objssl.cli", *args], capture_output=True, text=True, env=environ)


def test_plugins_from_entry_points_end_to_end(tmp_path):
    _fake_plugin_dist(tmp_path, (
        "import torch\nfrom objssl.proposals import ProposalSource, Proposals\n"
        "class FakeBoxes(ProposalSource):\n    name = 'fake_boxes'\n    version = '3'\n"
        "    def propose(self, image):\n        return Proposals(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))\n"
    ))
    out = _run_cli(["list", "proposals"], tmp_path)
    assert out.returncode == 0, out.stderr
    lines = {}
    for line in out.stdout.splitlines()[1:]:
        lines.setdefault(line.split()[0], []).append(line)
    lines = {k: "\n".join(v) for k, v in lines.items()}
    assert "fake-props: fake_props:FakeBoxes" in lines["fake_boxes"] and "ok (version 3)" in lines["fake_boxes"]
    random_first, random_second = lines["random"].splitlines()
    assert "built-in" in random_first and "ok" in random_first  # the built-in wins the name clash ...
    assert "shadowed" in random_second and "takes precedence" in random_second  # ... which is reported
    assert "unavailable" in lines["fake_broken"] and "fake_missing_module" in lines["fake_broken"]
    # the broken plugin is named when asked for, and does not affect the others
    out = _run_cli(["proposals", "--source", "fake_broken", "--out", str(tmp_path / "c")], tmp_path)
    assert out.returncode == 2 and "fake_broken" in out.stderr and "failed to load" in out.stderr
    out = _run_cli(["proposals", "--source", "fake_boxes", "--out", str(tmp_path / "c"), "--no-progress"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "1.0 boxes/image" in out.stdout
    # autoloading off: only the built-ins remain
    out = _run_cli(["list", "proposals"], tmp_path, OBJSSL_DISABLE_PLUGIN_AUTOLOAD="1")
    assert "fake_boxes" not in out.stdout and "random" in out.stdout
