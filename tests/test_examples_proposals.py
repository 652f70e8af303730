"""examples/custom_proposals: its pyproject declares the entry point, the source keeps the contract,
builds a cache, and the example's own tests pass."""

import importlib.util
import os
import tomllib

import pytest
import torch

from objssl.proposals import ProposalCache, build_cache, check_proposal_source, create_source
from objssl.proposals.checks import bundled_photos
from objssl.registry import PROPOSALS

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "custom_proposals")


@pytest.fixture
def edge_density(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(EXAMPLE, "src"))
    module = importlib.import_module("objssl_edge_density")
    return module.EdgeDensity


def test_pyproject_declares_the_entry_point(edge_density):
    with open(os.path.join(EXAMPLE, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    points = project["entry-points"]["objssl.proposals"]
    assert points == {"edge_density": "objssl_edge_density:EdgeDensity"}
    module, attr = points["edge_density"].split(":")
    assert getattr(importlib.import_module(module), attr) is edge_density
    assert edge_density.name == "edge_density"  # the registered name and the class's name agree
    assert "objssl" in project["dependencies"]
    assert os.path.isfile(os.path.join(EXAMPLE, "README.md"))


def test_keeps_the_contract_and_builds_a_cache(edge_density, monkeypatch, tmp_path):
    check_proposal_source(edge_density, max_boxes=20)
    monkeypatch.setitem(PROPOSALS._objs, "edge_density", edge_density)  # what the entry point does
    source = create_source("edge_density", max_boxes=10)
    assert source.cache_key() != create_source("edge_density", max_boxes=11).cache_key()
    photos = bundled_photos()[:2]
    build_cache(source, photos, str(tmp_path / "c"), progress=False)
    cache = ProposalCache(str(tmp_path / "c"))
    assert cache.source == "edge_density"
    for p in photos:
        boxes = cache.boxes_for(p)
        assert boxes.shape == (10, 4) and bool((boxes[:, 2] > boxes[:, 0]).all())


def test_the_example_s_own_tests_pass(edge_density):
    spec = importlib.util.spec_from_file_location(
        "example_edge_density_tests", os.path.join(EXAMPLE, "tests", "test_edge_density.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [getattr(module, n) for n in dir(module) if n.startswith("test_")]
    assert len(tests) == 2
    for test in tests:
        test()
    tiny = edge_density(max_boxes=3)(torch.zeros(8, 6, 3, dtype=torch.uint8).numpy()).boxes  # flat: still boxes
    assert len(tiny) == 3 and float(tiny[:, 2].max()) <= 6 and float(tiny[:, 3].max()) <= 8
