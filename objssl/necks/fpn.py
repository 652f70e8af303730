"""Feature pyramid over the multi-scale maps of any backbone, laid out like detectron2's FPN.

Built on :class:`torchvision.ops.FeaturePyramidNetwork` (1x1 lateral and 3x3 output convs, nearest
top-down, sum fusion), optionally with a norm after each conv as SoCo's pretraining FPN and detectron2's
``MODEL.FPN.NORM`` have; :func:`fpn_to_detectron2` renames its weights to detectron2's
``backbone.fpn_lateral{L}`` / ``backbone.fpn_output{L}`` so a pretrained FPN initialises Mask R-CNN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

from objssl.registry import NECKS

__all__ = ["FPNNeck", "fpn_to_detectron2"]


@NECKS.register("fpn")
class FPNNeck(nn.Module):
    """FPN: maps ``c2..c5`` → ``p2..p5`` with ``out_channels`` each (same strides).

    Args:
        in_channels: channels of each input map, by name (``backbone.channels()``).
        strides: stride of each input map, by name (``backbone.strides()``).
        out_channels: 256 (SoCo, detectron2).
        norm: ``"bn"`` (SoCo: BN after every conv, SyncBN under DDP) or ``"none"`` (detectron2's default).
        in_features: which maps to use, finest first (default: all, by stride).

    Shapes: ``{name: [B, C_name, H/s, W/s]}`` → ``{"p{log2 s}": [B, out_channels, H/s, W/s]}``.
    """

    def __init__(
        self,
        in_channels: dict[str, int],
        strides: dict[str, int],
        out_channels: int = 256,
        norm: str = "bn",
        in_features: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        names = list(in_features) if in_features else sorted(in_channels, key=lambda n: strides[n])
        missing = [n for n in names if n not in in_channels]
        if missing:
            raise ValueError(f"FPNNeck: in_features {missing} are not among the backbone maps {sorted(in_channels)}")
        if norm not in ("bn", "none"):
            raise ValueError(f"FPNNeck: norm must be 'bn' or 'none', got {norm!r}")
        self.in_features = names
        self.out_names = [f"p{int(math.log2(strides[n]))}" for n in names]
        self.strides = {o: strides[n] for o, n in zip(self.out_names, names)}
        self.out_channels = out_channels
        self.fpn = FeaturePyramidNetwork(
            [in_channels[n] for n in names], out_channels, norm_layer=nn.BatchNorm2d if norm == "bn" else None
        )

    def forward(self, maps: dict[str, Tensor]) -> dict[str, Tensor]:
        out = self.fpn({n: maps[n] for n in self.in_features})
        return dict(zip(self.out_names, out.values()))


_TV_KEY = re.compile(r"^fpn\.(inner|layer)_blocks\.(\d+)\.(\d)\.(.+)$")


def fpn_to_detectron2(state: dict[str, Tensor], out_names: Sequence[str]) -> dict[str, Tensor]:
    """``FPNNeck`` state dict → detectron2 FPN keys (``backbone.fpn_lateral2.weight``,
    ``backbone.fpn_output2.norm.running_mean``, ...). ``out_names``: the neck's ``p*`` names."""
    out = {}
    for key, value in state.items():
        m = _TV_KEY.match(key)
        if m is None:
            raise KeyError(f"fpn_to_detectron2: unexpected FPN key {key!r}")
        kind, idx, sub, rest = m.groups()
        level = out_names[int(idx)][1:]
        base = f"backbone.fpn_{'lateral' if kind == 'inner' else 'output'}{level}"
        out[f"{base}.{rest}" if sub == "0" else f"{base}.norm.{rest}"] = value
    return out
