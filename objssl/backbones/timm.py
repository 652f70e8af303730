"""Any timm model as an objssl backbone: named multi-scale maps and a pooled vector.

The wrapped model is the plain timm model (``timm.create_model(name, num_classes=0)``), kept as
``backbone.model`` so that its ``state_dict`` keys are exactly timm's: exported weights load back
into ``timm.create_model(name)`` with nothing renamed.

Feature maps come from timm's ``forward_intermediates`` (CNNs and ViTs alike); the pooled vector
comes from the model's own head (``forward_head(..., pre_logits=True)``), so it is the model's
native pooling (average for ResNets, class token or average for ViTs, norm-after-pool for ConvNeXt).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from objssl.errors import UserError
from objssl.registry import BACKBONES

__all__ = [
    "BackboneOutput",
    "FeatureInfo",
    "TimmBackbone",
    "SimpleFeaturePyramid",
    "check_backbone_name",
    "create_backbone",
]


class BackboneOutput(NamedTuple):
    """What a backbone returns.

    Attributes:
        maps: feature maps by name (``"c2"`` .. ``"c5"``), each ``[B, C_i, H/s_i, W/s_i]``.
        pooled: the global vector ``[B, num_features]`` (None when it was not asked for).
    """

    maps: dict[str, Tensor]
    pooled: Tensor | None


@dataclass(frozen=True)
class FeatureInfo:
    """One feature map: its name, channels, stride (reduction), timm feature index and the timm module
    that produces it (``"layer3"`` on a ResNet; ``""`` for the maps of a simple pyramid)."""

    name: str
    channels: int
    stride: int
    index: int
    module: str = ""


def _is_single_scale(model: nn.Module) -> bool:
    """True for plain ViTs: every block has the same stride (no hierarchy of stages)."""
    return len({int(f["reduction"]) for f in model.feature_info}) == 1


class SimpleFeaturePyramid(nn.Module):
    """ViTDet-style pyramid from one stride-16 map: strides 4, 8, 16 and 32.

    Stride 4 and 8 come from transposed convolutions, 16 is the map itself, 32 a max-pool; each
    level ends with a 1x1 conv to ``out_channels`` so that the pyramid has uniform width.

    Input ``[B, C, H, W]`` (stride 16); output ``dict`` ``c2..c5``.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        out = out_channels or in_channels
        c = in_channels
        self.out_channels = out
        self.up4 = nn.Sequential(
            nn.ConvTranspose2d(c, c // 2, 2, stride=2),
            nn.GroupNorm(1, c // 2),
            nn.GELU(),
            nn.ConvTranspose2d(c // 2, c // 4, 2, stride=2),
            nn.Conv2d(c // 4, out, 1),
        )
        self.up2 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 2, stride=2), nn.Conv2d(c // 2, out, 1))
        self.same = nn.Conv2d(c, out, 1)
        self.down = nn.Sequential(nn.MaxPool2d(2, stride=2), nn.Conv2d(c, out, 1))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"c2": self.up4(x), "c3": self.up2(x), "c4": self.same(x), "c5": self.down(x)}


def check_backbone_name(name: str) -> None:
    """Raise a one-line :class:`UserError` (with close matches) unless ``name`` can be built."""
    import timm

    if name in BACKBONES or timm.is_model(name):
        return
    import difflib

    close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UserError(
        f"unknown backbone {name!r}: not a timm model name.{hint} (`objssl list backbones PATTERN` lists them)"
    )


class TimmBackbone(nn.Module):
    """A timm model that returns :class:`BackboneOutput`.

    Args:
        model_name: any name ``timm.list_models()`` knows.
        out_indices: which of timm's ``feature_info`` entries to return as maps. Default: for CNNs
            every stage with stride >= 4 (C2–C5 on a ResNet); for ViTs the last block.
        pretrained_file: local ``.pth``/``.safetensors`` with timm weights (never a hub download).
        simple_pyramid: ViTs only: turn the last map into strides 4/8/16/32 (ViTDet).
        pyramid_channels: width of the simple pyramid's maps (default: the embedding width).
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``drop_path_rate``, ``img_size``).
    """

    def __init__(
        self,
        model_name: str,
        *,
        out_indices: list[int] | tuple[int, ...] | None = None,
        pretrained_file: str | None = None,
        simple_pyramid: bool = False,
        pyramid_channels: int | None = None,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        import timm

        check_backbone_name(model_name)
        if pretrained_file is not None and not os.path.isfile(pretrained_file):
            raise UserError(f"backbone pretrained_file {pretrained_file!r} does not exist")
        kwargs = dict(timm_kwargs)
        kwargs.setdefault("num_classes", 0)
        arch_is_vit = any(k in model_name for k in ("vit", "deit", "beit", "eva", "dino"))
        if arch_is_vit:
            kwargs.setdefault("dynamic_img_size", True)
        elif "swin" in model_name:
            kwargs.setdefault("strict_img_size", False)
        if pretrained_file is not None:
            kwargs["pretrained"] = True
            kwargs["pretrained_cfg_overlay"] = dict(file=os.path.abspath(pretrained_file))
        else:
            kwargs["pretrained"] = False
        try:
            self.model = timm.create_model(model_name, **kwargs)
        except TypeError as exc:
            raise UserError(f"backbone {model_name!r}: bad keyword argument for timm: {exc}") from exc
        if not hasattr(self.model, "forward_intermediates"):
            raise UserError(
                f"backbone {model_name!r}: this timm model has no forward_intermediates(), "
                "so objssl cannot read its feature maps"
            )
        self.model_name = model_name
        self.is_single_scale = _is_single_scale(self.model)
        infos = list(self.model.feature_info)
        if out_indices is None:
            if self.is_single_scale:
                out_indices = (len(infos) - 1,)
            else:
                out_indices = tuple(i for i, f in enumerate(infos) if f["reduction"] >= 4)
        out_indices = tuple(int(i) % len(infos) for i in out_indices)
        if len(set(out_indices)) != len(out_indices):
            raise UserError(f"backbone out_indices {out_indices} repeat an index")
        self.out_indices = out_indices
        strides = [int(infos[i]["reduction"]) for i in out_indices]
        unique = len(set(strides)) == len(strides)
        feature_info = []
        for i, stride in zip(out_indices, strides):
            name = f"c{int(round(math.log2(stride)))}" if unique else f"b{i}"
            feature_info.append(FeatureInfo(name, int(infos[i]["num_chs"]), stride, i, str(infos[i]["module"])))
        self.pyramid: SimpleFeaturePyramid | None = None
        if simple_pyramid:
            if not self.is_single_scale:
                raise UserError(f"simple_pyramid is for ViT-like backbones; {model_name!r} is a CNN")
            last = feature_info[-1]
            self.pyramid = SimpleFeaturePyramid(last.channels, pyramid_channels)
            c = self.pyramid.out_channels
            feature_info = [
                FeatureInfo(f"c{lvl}", c, 2**lvl, last.index) for lvl in (2, 3, 4, 5)
            ]
        self.feature_info: list[FeatureInfo] = feature_info
        self.out_features: list[str] = [f.name for f in feature_info]
        self.num_features: int = int(self.model.num_features)

    # -------------------------------------------------------------------------------------------
    def forward(self, x: Tensor, *, maps: Sequence[str] | None = None, pooled: bool = True) -> BackboneOutput:
        """``x [B, 3, H, W]`` → :class:`BackboneOutput` (maps by name, pooled ``[B, num_features]``).

        ``pooled=False`` with ``maps`` (names of :attr:`feature_info`) computes only those maps and
        stops after the deepest of them (``forward_intermediates(stop_early=True)``): SoCo-C4 never
        runs the last stage on the whole image.
        """
        if not pooled:
            return BackboneOutput(self._maps_only(x, self.feature_info if maps is None else maps), None)
        final, inters = self.model.forward_intermediates(
            x, indices=list(self.out_indices), norm=False, output_fmt="NCHW", intermediates_only=False
        )
        pooled = self.model.forward_head(final, pre_logits=True)
        if self.pyramid is not None:
            maps = self.pyramid(inters[-1])
        else:
            maps = {f.name: t for f, t in zip(self.feature_info, inters)}
        return BackboneOutput(maps, pooled)

    def _maps_only(self, x: Tensor, names: Sequence[str | FeatureInfo]) -> dict[str, Tensor]:
        wanted = {n.name if isinstance(n, FeatureInfo) else n for n in names}
        unknown = wanted - set(self.out_features)
        if unknown:
            raise ValueError(f"backbone {self.model_name!r} has no maps {sorted(unknown)} (it has {self.out_features})")
        infos = [f for f in self.feature_info if f.name in wanted]
        indices = sorted({f.index for f in infos})
        inters = self.model.forward_intermediates(x, indices=indices, intermediates_only=True, stop_early=True)
        if self.pyramid is not None:
            return {n: t for n, t in self.pyramid(inters[-1]).items() if n in wanted}
        by_index = dict(zip(indices, inters))
        return {f.name: by_index[f.index] for f in infos}

    def module_of(self, name: str) -> nn.Module:
        """The timm module that produces map ``name`` (SoCo-C4 applies the last stage to RoI features)."""
        info = next((f for f in self.feature_info if f.name == name), None)
        if info is None or not info.module:
            raise ValueError(f"backbone {self.model_name!r}: map {name!r} has no module of its own")
        return self.model.get_submodule(info.module)

    def forward_pooled(self, x: Tensor) -> Tensor:
        """Only the pooled vector ``[B, num_features]`` (skips nothing timm computes anyway)."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def channels(self) -> dict[str, int]:
        return {f.name: f.channels for f in self.feature_info}

    def strides(self) -> dict[str, int]:
        return {f.name: f.stride for f in self.feature_info}

    def extra_repr(self) -> str:
        return f"model_name={self.model_name!r}, out_features={self.out_features}"


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build a backbone by name: a registered objssl backbone, else any timm model name.

    Example::

        bb = create_backbone("resnet50")
        out = bb(torch.randn(2, 3, 224, 224))
        out.maps["c5"].shape   # [2, 2048, 7, 7]
        out.pooled.shape       # [2, 2048]
    """
    if name in BACKBONES:
        return BACKBONES.build(name, **kwargs)
    return TimmBackbone(name, **kwargs)
