"""objssl.testing: the public checkers plugin authors call catch parts that break the contract."""

import pytest
import torch

from objssl.objectives import BYOLGlobal
from objssl.proposals import GridSource, Proposals, ProposalSource
from objssl.testing import ProposalSourceCheckError, check_objective, check_proposal_source


def test_check_objective_passes_a_builtin_term():
    logged = check_objective(BYOLGlobal)
    assert "loss" in logged and torch.isfinite(torch.tensor(logged["loss"]))


class _DetachedPredictor(BYOLGlobal):
    """A term whose loss never reaches its projector: what the checker is for."""

    name = "detached_predictor"

    def forward(self, batch, feats):
        online, target = feats.heads("online", self.name), feats.heads("target", self.name)
        pooled = [feats.backbone("online", v).pooled for v in (0, 1)]
        p = [online["predictor"](x[:, : self.proj_dim]) for x in pooled]
        z = [target["projector"](feats.backbone("target", v).pooled).detach() for v in (0, 1)]
        return {"loss": self.criterion(p[0], p[1], z[0], z[1])}


def test_check_objective_names_a_head_without_gradient():
    with pytest.raises(AssertionError, match="detached_predictor: no gradient reaches"):
        check_objective(_DetachedPredictor, proj_dim=8)


class _Shifting(ProposalSource):
    """Boxes that leave the image: the checker must refuse them."""

    name, version = "shifting", "1"

    def propose(self, image):
        h, w = image.shape[:2]
        return Proposals(torch.tensor([[w / 2, h / 2, w + 10.0, h + 10.0]]))


def test_check_proposal_source_passes_grid_and_refuses_boxes_outside_the_image():
    check_proposal_source(GridSource)
    with pytest.raises(ProposalSourceCheckError, match="inside"):
        check_proposal_source(_Shifting)


class _NeedsNeighboursAndBoxes(BYOLGlobal):
    name = "needs_neighbours_and_boxes"
    needs = frozenset({"views", "boxes", "neighbours"})


def test_check_objective_says_when_no_pipeline_provides_a_need():
    with pytest.raises(ValueError, match="no objssl data pipeline provides neighbours together with boxes"):
        check_objective(_NeedsNeighboursAndBoxes)
