"""Framework-free core of the detectron2 and mmseg integrations: a timm model cut down to the
feature maps a detector or segmenter needs, loaded from an objssl checkpoint with a report.

:class:`TimmDenseFeatures` keeps the plain timm model as ``.model`` (so the downstream keys are
``<prefix>model.<timm key>``), returns a list of ``[B, C_i, H/s_i, W/s_i]`` maps, drops the layers
after the last requested map (their weights are reported as *dropped*, never silently), and
offers the three things both frameworks want: norm conversion (BN / SyncBN / FrozenBN), freezing
the stem and the first stages, and :meth:`~TimmDenseFeatures.load_weights` from an objssl
checkpoint (teacher or student) or a timm state dict, with a :class:`WeightsReport`.

Nothing here imports detectron2 or mmseg.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from objssl.errors import UserError

__all__ = [
    "NORMS",
    "TimmDenseFeatures",
    "WeightsReport",
    "read_backbone_weights",
]

#: norm options, as detectron2 spells them (mmseg's ``norm_cfg`` types map onto these)
NORMS = ("BN", "SyncBN", "FrozenBN")

logger = logging.getLogger("objssl.integrations")


@dataclass
class WeightsReport:
    """What loading pretrained weights into a dense model did, key by key.

    Attributes:
        source: where the weights came from (file, teacher/student, method, backbone name).
        loaded: model keys that received a tensor from the file.
        missing: model keys the file had no tensor for (they keep their random init).
        unexpected: file keys the model has no place for.
        dropped: file keys of layers the dense model does not use (after the last feature map,
            e.g. a classifier norm), and BN ``num_batches_tracked`` counters of frozen BNs.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f", ... ({len(keys)} in all)" if len(keys) > 6 else "")

        lines = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        if self.missing:
            lines.append(f"missing (left at their initialisation): {show(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected (in the file, not in the model): {show(self.unexpected)}")
        if self.dropped:
            lines.append(f"dropped (layers the dense model does not use): {show(self.dropped)}")
        return "\n".join(lines)


def _torch_load(path: str) -> Any:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        # objssl checkpoints hold configs and training state next to the tensors
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UserError(f"checkpoint {path!r} cannot be read: {type(exc).__name__}: {exc}") from exc


def read_backbone_weights(
    path: str | os.PathLike, *, which: str = "teacher", model_name: str | None = None, prefix: str | None = None
) -> tuple[dict[str, Tensor], str]:
    """Backbone weights with timm's keys from an objssl checkpoint or a timm state-dict file.

    Args:
        path: an objssl checkpoint, or a file of timm weights (``objssl export --to timm``,
            ``.pth``/``.safetensors``; a ``{"state_dict": ...}``/``{"model": ...}`` wrapper and
            ``backbone.``/``model.`` key prefixes are accepted).
        which: ``"teacher"`` (EMA target, the default as in the official code) or ``"student"``.
        model_name: the timm name the weights are for; an objssl checkpoint whose backbone has
            another name is refused with an error naming both.
        prefix: for a state dict of a whole model (e.g. ``"backbone."``): keep only these keys.

    Returns:
        ``(state_dict, description of the source)``.
    """
    from objssl.checkpoint import CHECKPOINT_FORMAT
    from objssl.export.common import backbone_state_dict

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"pretrained checkpoint {path!r} does not exist")
    obj = _torch_load(path)
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        arch = (obj.get("backbone") or {}).get("name")
        if model_name is not None and arch is not None and arch != model_name:
            raise UserError(
                f"checkpoint {path!r} holds a {arch!r} backbone, but the model is built with "
                f"{model_name!r}: set the backbone name to {arch!r} or use a {model_name!r} checkpoint"
            )
        sd = backbone_state_dict(obj, which)
        return sd, f"{path} ({which} backbone {arch!r} of an objssl {obj.get('method', '?')!r} checkpoint)"
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise UserError(
            f"{path!r} is neither an objssl checkpoint nor a state dict of tensors "
            "(expected OUT/checkpoints/*.pth from objssl pretrain, or objssl export --to timm)"
        )
    if prefix:
        obj = {k[len(prefix):]: v for k, v in obj.items() if k.startswith(prefix)}
        if not obj:
            raise UserError(f"{path!r} has no tensors under prefix {prefix!r}")
    for strip in ("backbone.", "model."):
        if all(k.startswith(strip) for k in obj):
            obj = {k[len(strip):]: v for k, v in obj.items()}
    return dict(obj), f"{path} (timm state dict)"


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
        from objssl.backbones import create_backbone

        try:
            wrapper = create_backbone(
                model_name, out_indices=out_indices, simple_pyramid=simple_pyramid,
                pyramid_channels=pyramid_channels, **timm_kwargs,
            )
        except TypeError as exc:  # a timm kwarg the model does not take (e.g. output_stride)
            raise UserError(f"backbone {model_name!r}: {exc}") from exc
        self.model_name = model_name
        self.model: nn.Module = wrapper.model
        self.pyramid: nn.Module | None = getattr(wrapper, "pyramid", None)
        self.out_indices: tuple[int, ...] = tuple(wrapper.out_indices)
        #: name (``c2``..``c5``, or ``b<i>`` when strides repeat), channels, stride of each map
        self.feature_info = list(wrapper.feature_info)
        self._stage_modules = self._find_stage_modules()
        before = set(self.model.state_dict())
        prune = getattr(self.model, "prune_intermediate_layers", None)
        if prune is not None:
            # Layers after the last tap (and the classifier's norm/head) would hold weights that
            # get no gradient: DDP would reject them, and they would waste memory.
            prune(indices=list(self.out_indices), prune_norm=True, prune_head=True)
        #: keys of the full timm model that the cut-down model no longer has
        self.pruned_keys: frozenset[str] = frozenset(before - set(self.model.state_dict()))
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
        """Turn the BatchNorms of the timm model into ``"BN"`` (as is), ``"SyncBN"`` or ``"FrozenBN"``.

        LayerNorm/GroupNorm models (ConvNeXt, ViT) have no BatchNorm and are left as they are.
        """
        from timm.layers import convert_sync_batchnorm, freeze_batch_norm_2d

        if norm not in NORMS:
            raise UserError(f"norm {norm!r} is not supported: choose one of {', '.join(NORMS)}")
        if norm == "SyncBN":
            self.model = convert_sync_batchnorm(self.model)
        elif norm == "FrozenBN":
            # statistics and affine terms become buffers, as detectron2's FrozenBN
            self.model = freeze_batch_norm_2d(self.model)

    def freeze(self, num_units: int) -> list[str]:
        """Freeze the stem (unit 1) and then whole levels (units 2, 3, ...: stride 4, 8, ... stages).

        ``num_units`` 0 freezes nothing (the self-supervised transfer setting, detectron2's
        ``FREEZE_AT 0``); detectron2's ``FREEZE_AT k`` is ``num_units=k``, mmseg's
        ``frozen_stages=i`` is ``num_units=i + 1``. Frozen parameters stop requiring gradients and
        BatchNorms whose parameters are all frozen become ``FrozenBatchNorm2d``.

        Returns:
            the names of the frozen parameters.
        """
        if num_units < 0:
            raise UserError(f"freeze: number of frozen units must be >= 0, got {num_units}")
        levels = len(self._stage_modules)
        if num_units > levels + 1:
            raise UserError(
                f"freeze: {self.model_name!r} has a stem and {levels} levels; cannot freeze {num_units}"
            )
        if num_units == 0:
            return []
        order = {name: i for i, (name, _) in enumerate(self.model.named_modules())}
        ends = []
        for name in self._stage_modules:
            sub = [i for n, i in order.items() if n == name or n.startswith(name + ".")]
            ends.append((min(sub), max(sub)))
        # unit of a module position: 0 = stem (before the first level starts), j+1 = level j
        # (everything after level j-1 ends, up to where level j ends), levels+1 = after the last
        def unit(pos: int) -> int:
            if pos < ends[0][0]:
                return 0
            for j, (_, end) in enumerate(ends):
                if pos <= end:
                    return j + 1
            return levels + 1

        frozen = []
        for name, p in self.model.named_parameters():
            owner = name.rsplit(".", 1)[0] if "." in name else ""
            if unit(order.get(owner, 0)) < num_units:
                p.requires_grad_(False)
                frozen.append(name)
        self._freeze_batchnorms()
        return frozen

    def _freeze_batchnorms(self) -> None:
        from timm.layers import freeze_batch_norm_2d

        for name, module in list(self.model.named_modules()):
            params = list(module.parameters(recurse=False))
            if not isinstance(module, nn.modules.batchnorm._BatchNorm) or not params:
                continue
            if any(p.requires_grad for p in params):
                continue
            parent_name, _, child = name.rpartition(".")
            parent = self.model.get_submodule(parent_name) if parent_name else self.model
            parent.add_module(child, freeze_batch_norm_2d(module))
