"""ORL (Xie et al., NeurIPS 2021), stage 3: image-level BYOL plus intra-RoI and inter-RoI learning over
one backbone — ``byol_global`` + ``orl_intra_roi`` + ``orl_inter_roi``, weights 1 / 1 / 1, sharing the
backbone, byol_global's projector and the EMA target, each with its own predictor
(``ORL:openselfsup/models/orl.py``). The samples come from stage 2's folder (``data.correspondence``):
:class:`objssl.data.neighbour_pairs.NeighbourPairDataset`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from objssl.data.neighbour_pairs import NeighbourPairDataset
from objssl.data.roi_pair_events import collate_neighbour_pairs
from objssl.data.roi_pair_views import RoIPairViews
from objssl.errors import ConfigError, DataError
from objssl.methods.base import augment_on_of
from objssl.methods.byol import BYOL
from objssl.methods.objective_method import ObjectiveMethod
from objssl.objectives import BYOLGlobal, ORLInterRoI, ORLIntraRoI
from objssl.registry import METHODS

__all__ = ["ORL", "CORRESPONDENCE_HINT"]

CORRESPONDENCE_HINT = ("build it with `objssl orl --config CONFIG --stages 1,2 --out OUT` and pass "
                       "data.correspondence=OUT/stage2")
_SHOW = 3  # how many missing images an error names


@METHODS.register("orl")
class ORL(ObjectiveMethod):
    """ORL's stage 3 over any backbone that returns a pooled vector.

    Args:
        backbone: an objssl backbone (``create_backbone``).
        proj_hidden_dim, proj_dim: the shared projector's sizes (4096 → 256).
        pred_hidden_dim: hidden size of the three predictors (4096).
        head_norm: ``bn`` (SyncBN under DDP), ``ln`` or ``none``.
        image_size: side of the whole-image views (224).
        patch_size: side of the RoI patches (96).
        base_momentum, final_momentum: EMA schedule (0.99 → 1, cosine).
    """

    name = "orl"
    uses_data = frozenset({"correspondence"})
    collate_fn = staticmethod(collate_neighbour_pairs)

    def __init__(self, backbone: nn.Module, *, proj_hidden_dim: int = 4096, proj_dim: int = 256,
                 pred_hidden_dim: int = 4096, head_norm: str = "bn", image_size: int = 224, patch_size: int = 96,
                 base_momentum: float = 0.99, final_momentum: float = 1.0) -> None:
        heads = dict(proj_hidden_dim=proj_hidden_dim, proj_dim=proj_dim, pred_hidden_dim=pred_hidden_dim,
                     head_norm=head_norm)
        terms = [(BYOLGlobal(**heads), 1.0), (ORLIntraRoI(**heads), 1.0), (ORLInterRoI(**heads), 1.0)]
        super().__init__(backbone, terms, image_size=image_size, base_momentum=base_momentum,
                         final_momentum=final_momentum)
        self._hparams = {"image_size": image_size, "patch_size": patch_size}

    @classmethod
    def check_config(cls, method_cfg: Mapping[str, Any]) -> None:
        super().check_config(method_cfg)
        patch = cls.config_value(method_cfg, "patch_size")
        if patch < 8:
            raise ConfigError(f"method.patch_size={patch!r}: must be >= 8")

    @classmethod
    def open_store(cls, data_cfg: Mapping[str, Any]) -> Any:
        """The stage-2 folder ``data.correspondence``, opened (ConfigError saying how to build one when unset)."""
        from objssl.correspondence.store import CorrespondenceStore

        folder = data_cfg.get("correspondence")
        if not folder:
            raise ConfigError(f"orl needs stage 2's correspondence folder: {CORRESPONDENCE_HINT}")
        return CorrespondenceStore.open(folder)

    @classmethod
    def check_data(cls, paths: Sequence[str], cfg: Mapping[str, Any]) -> None:
        """``data.correspondence`` opens and holds every image (DataError naming the first missing ones)."""
        store = cls.open_store(cfg["data"])
        missing = []
        for p in paths:
            try:
                store.index_of(p)
            except KeyError:
                missing.append(p)
        if missing:
            shown = ", ".join(missing[:_SHOW]) + (", ..." if len(missing) > _SHOW else "")
            raise DataError(f"data.correspondence: {store.folder} has no entry for {len(missing)} of the {len(paths)} "
                            f"images ({shown}); {CORRESPONDENCE_HINT} on this data")

    @classmethod
    def transform_for(cls, method_cfg: Mapping[str, Any], proposals: Any = None, augment_on: str = "loader") -> Callable[..., dict[str, Any]]:
        """The whole-image views alone (BYOL's at ``image_size``): the RoI patches need a neighbour image
        and stored pairs, which only the dataset has (:class:`RoIPairViews`)."""
        return BYOL.transform_for({"image_size": cls.config_value(method_cfg, "image_size")}, augment_on=augment_on)

    def build_dataset(self, paths: Sequence[str], cfg: Mapping[str, Any]) -> NeighbourPairDataset:
        """The stage-3 dataset; ``data.augment_on=device``: the loader draws, the device makes the pixels
        (:class:`RoIPairViews`; both images are always decoded at full size, ``data.reduced_decode``
        does not apply)."""
        views = RoIPairViews(image_size=self.hparams["image_size"], patch_size=self.hparams["patch_size"],
                             augment_on=augment_on_of(cfg["data"]))
        return NeighbourPairDataset(paths, self.open_store(cfg["data"]), views, min_side=cfg["data"]["min_side"])
