"""Region heads: FPN level assignment, multi-level RoIAlign, the 4conv1fc box head.

Boxes are ``xyxy`` in view pixels, batched as ``[B, K, 4]``; everything is vectorised over images and
boxes (the only loop is over the 4 pyramid levels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation, roi_align

from objssl.registry import HEADS

__all__ = ["assign_fpn_levels", "multilevel_roi_align", "ConvFCBoxHead", "box_head_to_detectron2"]


def assign_fpn_levels(boxes: Tensor, thresholds: Sequence[float] = (48, 96, 192, 224)) -> Tensor:
    """SoCo's level rule: a box goes to the first level whose threshold its size ``sqrt(w*h)`` (view
    pixels) does not exceed; ``-1`` if it exceeds them all. ``[..., 4] -> long [...]``.

    With the default thresholds: P2 ≤ 48 < P3 ≤ 96 < P4 ≤ 192 < P5 ≤ 224 (SoCo's ``aware_range``).
    """
    size = ((boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)).sqrt()
    th = torch.as_tensor(list(thresholds), dtype=size.dtype, device=size.device)
    level = torch.searchsorted(th, size.contiguous(), right=False)  # first threshold >= size
    return torch.where(level < len(th), level, torch.full_like(level, -1))


def multilevel_roi_align(
    features: Sequence[Tensor], boxes: Tensor, levels: Tensor, strides: Sequence[int], output_size: int = 7
) -> Tensor:
    """RoIAlign each box on its own level (``aligned=True``).

    Args:
        features: per level ``[B, C, H_l, W_l]``, finest first.
        boxes: ``[B, K, 4]`` in view pixels. levels: ``long [B, K]`` (``-1``: not pooled, zeros out).
        strides: stride of each level.

    Returns:
        ``[B * K, C, output_size, output_size]`` in ``(b, k)`` order.
    """
    B, K = boxes.shape[:2]
    C = features[0].shape[1]
    flat_boxes, flat_levels = boxes.reshape(B * K, 4), levels.reshape(B * K)
    batch_idx = torch.arange(B, device=boxes.device).repeat_interleave(K)
    out = features[0].new_zeros(B * K, C, output_size, output_size)
    for lvl, (feat, stride) in enumerate(zip(features, strides)):  # 4 levels, not boxes
        sel = torch.nonzero(flat_levels == lvl).reshape(-1)
        if len(sel) == 0:
            continue
        rois = torch.cat([batch_idx[sel, None].to(flat_boxes.dtype), flat_boxes[sel]], dim=1)
        pooled = roi_align(feat, rois.to(feat.dtype), output_size, spatial_scale=1.0 / stride, sampling_ratio=0, aligned=True)
        out = out.index_copy(0, sel, pooled.to(out.dtype))
    return out


@HEADS.register("conv_fc_box_head")
class ConvFCBoxHead(nn.Module):
    """detectron2's ``FastRCNNConvFCHead`` "4conv1fc": ``num_conv`` × (3x3 conv + norm + ReLU), flatten,
    one FC + ReLU. ``[N, C, 7, 7] -> [N, fc_dim]``. Weights map 1:1 onto detectron2's
    ``roi_heads.box_head.conv{i}`` / ``fc1`` (:func:`box_head_to_detectron2`)."""

    def __init__(
        self, in_channels: int = 256, conv_dim: int = 256, num_conv: int = 4, fc_dim: int = 1024,
        pooler_resolution: int = 7, norm: str = "bn",
    ) -> None:
        super().__init__()
        norm_layer = nn.BatchNorm2d if norm == "bn" else None
        convs = []
        for i in range(num_conv):
            conv = Conv2dNormActivation(in_channels if i == 0 else conv_dim, conv_dim, 3, norm_layer=norm_layer,
                                        activation_layer=nn.ReLU)
            nn.init.kaiming_normal_(conv[0].weight, mode="fan_out", nonlinearity="relu")  # detectron2's c2_msra_fill
            if conv[0].bias is not None:
                nn.init.zeros_(conv[0].bias)
            convs.append(conv)
        self.convs = nn.Sequential(*convs)
        self.fc = nn.Linear((conv_dim if num_conv else in_channels) * pooler_resolution ** 2, fc_dim)
        nn.init.kaiming_uniform_(self.fc.weight, a=1)  # detectron2's c2_xavier_fill
        nn.init.zeros_(self.fc.bias)
        self.out_dim = fc_dim

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.fc(self.convs(x).flatten(1)))


def box_head_to_detectron2(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``ConvFCBoxHead`` state dict → ``roi_heads.box_head.conv{i}[.norm].*`` / ``roi_heads.box_head.fc1.*``."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "convs":
            base = f"roi_heads.box_head.conv{int(parts[1]) + 1}"
            out[f"{base}.{'.'.join(parts[3:])}" if parts[2] == "0" else f"{base}.norm.{'.'.join(parts[3:])}"] = value
        elif parts[0] == "fc":
            out[f"roi_heads.box_head.fc1.{parts[1]}"] = value
        else:
            raise KeyError(f"box_head_to_detectron2: unexpected key {key!r}")
    return out
