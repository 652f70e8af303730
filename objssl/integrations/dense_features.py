"""Framework-free core of the detectron2 and mmseg integrations: a timm model cut down to the
feature maps a detector or segmenter needs, loaded from an objssl checkpoint with a report.

:class:`TimmDenseFeatures` keeps the plain timm model as ``.model`` (so the downstream keys are
``<prefix>model.<timm key>``), returns a list of ``[B, C_i, H/s_i, W/s_i]`` maps, drops the layers
after the last requested map (:func:`objssl.export.dense_model.cut_down_backbone`: their weights are
reported as *dropped*, never silently), and offers what both frameworks want: norm conversion and
freezing (:mod:`.norms`) and :meth:`~TimmDenseFeatures.load_weights` (:mod:`.weights`).

Nothing here imports detectron2 or mmseg.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from torch import Tensor, nn

from objssl.errors import UserError
from objssl.export.dense_model import cut_down_backbone
from objssl.integrations.norms import convert_norm, freeze_units
from objssl.integrations.weights import WeightsReport, read_backbone_weights

__all__ = ["TimmDenseFeatures"]

logger = logging.getLogger("objssl.integrations")


class TimmDenseFeatures(nn.Module):
    """Any timm model as a list of feature maps for a detector or segmenter.

    Args:
        model_name: any ``timm.list_models()`` name (or a registered objssl backbone).
        out_indices: timm ``feature_info`` indices of the maps to return (ResNet: 1..4 are
            layer1..layer4 at strides 4..32). Default: every map with stride >= 4.
        simple_pyramid: ViTs only: strides 4/8/16/32 from the last map (ViTDet-style, new weights).
        pyramid_channels: width of the simple pyramid (default: the ViT's width).
        **timm_kwargs: passed to ``timm.create_model`` (``output_stride=8`` or ``16`` dilates the
            last stages of ResNets and other models that support it, ``drop_path_rate``, ...).

    ``forward(x [B, 3, H, W]) -> list[Tensor]``: one ``[B, C_i, H/s_i, W/s_i]`` map per out index.
    """

    def __init__(
        self,
        model_name: str,
        *,
        out_indices: list[int] | tuple[int, ...] | None = None,
        simple_pyramid: bool = False,
        pyramid_channels: int | None = None,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        wrapper, pruned = cut_down_backbone(
            model_name, out_indices=out_indices, simple_pyramid=simple_pyramid,
            pyramid_channels=pyramid_channels, **timm_kwargs,
        )
        self.model_name = model_name
        self.model: nn.Module = wrapper.model
        self.pyramid: nn.Module | None = getattr(wrapper, "pyramid", None)
        self.out_indices: tuple[int, ...] = tuple(wrapper.out_indices)
        #: name (``c2``..``c5``, or ``b<i>`` when strides repeat), channels, stride of each map
        self.feature_info = list(wrapper.feature_info)
        self._stage_modules = self._find_stage_modules()
        #: keys of the full timm model that the cut-down model no longer has
        self.pruned_keys: frozenset[str] = pruned
        self.load_report: WeightsReport | None = None

    # ------------------------------------------------------------------------------ structure
    def _find_stage_modules(self) -> list[str]:
        """timm modules that end each level from stride 4 on (ResNet: layer1..layer4)."""
        infos = list(self.model.feature_info)
        names = [str(f["module"]) for f in infos if int(f["reduction"]) >= 4]
        return names or [str(f["module"]) for f in infos]

    @property
    def channels(self) -> list[int]:
        return [f.channels for f in self.feature_info]

    @property
    def strides(self) -> list[int]:
        return [f.stride for f in self.feature_info]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.feature_info]

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = self.model.forward_intermediates(
            x, indices=list(self.out_indices), norm=False, output_fmt="NCHW", intermediates_only=True
        )
        if self.pyramid is not None:
            return list(self.pyramid(feats[-1]).values())
        return list(feats)

    # ------------------------------------------------------------------------------ weights
    def load_weights(
        self, path: str | os.PathLike, *, which: str = "teacher", strict: bool = True, prefix: str | None = None
    ) -> WeightsReport:
        """Load backbone weights from an objssl checkpoint (or timm file) and report every key.

        With ``strict`` (default) a missing model tensor or an unexpected file tensor is an error
        (it means the checkpoint is of another architecture); a shape mismatch always is. Keys of
        layers this model dropped are reported as ``dropped``. The report is logged at INFO and
        kept as ``self.load_report``.
        """
        sd, source = read_backbone_weights(path, which=which, model_name=self.model_name, prefix=prefix)
        target = self.model.state_dict()
        mismatched = [
            f"{k}: file {tuple(v.shape)} vs model {tuple(target[k].shape)}"
            for k, v in sd.items() if k in target and tuple(v.shape) != tuple(target[k].shape)
        ]
        if mismatched:
            raise UserError(
                f"{source} does not fit backbone {self.model_name!r} (another architecture?): "
                f"{len(mismatched)} tensors differ in shape, e.g. " + "; ".join(mismatched[:3])
            )
        report = WeightsReport(source=source)
        report.loaded = sorted(k for k in sd if k in target)
        report.missing = sorted(k for k in target if k not in sd)
        for k in sorted(k for k in sd if k not in target):
            frozen_counter = k.endswith("num_batches_tracked") and k.rsplit(".", 1)[0] + ".running_mean" in target
            (report.dropped if k in self.pruned_keys or frozen_counter else report.unexpected).append(k)
        if strict and (report.missing or report.unexpected):
            hint = ""
            if any(k.startswith("backbone.") for k in report.unexpected):
                hint = "; a whole model's checkpoint? take its backbone with prefix='backbone.'"
            raise UserError(
                f"{source} does not match backbone {self.model_name!r} (another architecture?): "
                f"{len(report.missing)} model tensors missing from the file (e.g. {', '.join(report.missing[:3])}), "
                f"{len(report.unexpected)} file tensors unknown to the model (e.g. {', '.join(report.unexpected[:3])})"
                + hint
            )
        self.model.load_state_dict({k: sd[k] for k in report.loaded}, strict=False)
        self.load_report = report
        logger.info("backbone %s: %s", self.model_name, report.summary())
        return report

    # ------------------------------------------------------------------------------ norms
    def convert_norm(self, norm: str) -> None:
        """Turn the BatchNorms of the timm model into ``"BN"`` (as is), ``"SyncBN"`` or ``"FrozenBN"``
        (:func:`objssl.integrations.norms.convert_norm`)."""
        self.model = convert_norm(self.model, norm)

    def freeze(self, num_units: int) -> list[str]:
        """Freeze the stem and the first ``num_units - 1`` levels (:func:`objssl.integrations.norms.freeze_units`).

        Returns:
            the names of the frozen parameters.
        """
        return freeze_units(self.model, self._stage_modules, num_units, self.model_name)
