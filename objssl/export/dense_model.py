"""The timm model a detector or segmenter runs: objssl's backbone cut after its last feature map.

One rule, shared by the exporters (which keys the target model has) and by
:class:`objssl.integrations.dense_features.TimmDenseFeatures` (the model itself): layers after the
last requested map, and the classifier's norm and head, are pruned (they would get no gradient: DDP
rejects such weights, and they waste memory); their keys are returned so that loading can report
them as *dropped*, never silently.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from objssl.errors import UserError

__all__ = ["cut_down_backbone", "dense_model_on_meta"]

#: backbone kwargs a checkpoint records that only matter for pretraining
_PRETRAINING_ONLY = ("out_indices", "pretrained_file")


def cut_down_backbone(
    model_name: str,
    *,
    out_indices: list[int] | tuple[int, ...] | None = None,
    simple_pyramid: bool = False,
    pyramid_channels: int | None = None,
    **timm_kwargs: Any,
) -> tuple[Any, frozenset[str]]:
    """``(objssl backbone wrapper with its timm model pruned after the last map, pruned timm keys)``."""
    from objssl.backbones import create_backbone

    try:
        wrapper = create_backbone(
            model_name, out_indices=out_indices, simple_pyramid=simple_pyramid,
            pyramid_channels=pyramid_channels, **timm_kwargs,
        )
    except TypeError as exc:  # a timm kwarg the model does not take (e.g. output_stride)
        raise UserError(f"backbone {model_name!r}: {exc}") from exc
    before = set(wrapper.model.state_dict())
    prune = getattr(wrapper.model, "prune_intermediate_layers", None)
    if prune is not None:
        prune(indices=list(wrapper.out_indices), prune_norm=True, prune_head=True)
    return wrapper, frozenset(before - set(wrapper.model.state_dict()))


def dense_model_on_meta(model_name: str, backbone_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """The cut-down timm model (all maps from stride 4) built on the meta device: its keys and
    structure, no memory. ``backbone_kwargs``: a checkpoint's ``backbone.kwargs``."""
    kwargs = {k: v for k, v in (backbone_kwargs or {}).items() if k not in _PRETRAINING_ONLY}
    with torch.device("meta"):
        wrapper, _ = cut_down_backbone(model_name, **kwargs)
    return wrapper.model
