"""objssl backbones for mmsegmentation: any timm model, loaded from an objssl checkpoint.

Importing this module registers ``ObjsslTimmBackbone`` in ``mmseg.registry.MODELS``; mmseg configs
load it with ``custom_imports``::

    custom_imports = dict(imports=["objssl.integrations.mmseg"], allow_failed_imports=False)
    model = dict(
        type="EncoderDecoder",
        backbone=dict(
            type="ObjsslTimmBackbone", model_name="resnet50", out_indices=(1, 2, 3, 4),
            output_stride=8,                                   # FCN-D8 (dilated layer3/layer4)
            norm_cfg=dict(type="SyncBN", requires_grad=True), norm_eval=False,
            init_cfg=dict(type="Pretrained", checkpoint="runs/byol/checkpoints/step_00100000.pth",
                          which="teacher"),
        ),
        decode_head=dict(type="FCNHead", in_channels=2048, in_index=3, ...),
    )

``init_cfg=dict(type="Pretrained", checkpoint=...)`` takes an objssl checkpoint (its teacher or
student backbone, ``which``), a timm state dict, or an ``objssl export --to mmseg`` file; every
key is reported (loaded / missing / unexpected / dropped) in the log, and a checkpoint of another
architecture is an error.

mmseg 1.2.2 needs ``mmcv._ext`` (compiled ops) at import time, which ``mmcv-lite`` lacks: if it is
missing, importing this module registers objssl's stand-in (:mod:`objssl.export._mmcv_ext_stub`; its ops raise
when called; FCN and the other plain heads call none).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from objssl.errors import UserError
from objssl.export import _mmcv_ext_stub
from objssl.integrations.dense_features import TimmDenseFeatures
from objssl.integrations.weights import WeightsReport

_mmcv_ext_stub.install()

from mmengine.logging import print_log  # noqa: E402
from mmengine.model import BaseModule  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402

__all__ = ["ObjsslTimmBackbone"]

_NORM_TYPES = {"BN": "BN", "BN2d": "BN", "SyncBN": "SyncBN", "FrozenBN": "FrozenBN"}


def _uncontract_first_dilation(model: nn.Module, output_stride: int) -> None:
    """Give the first block of each dilated ResNet stage the stage's full dilation.

    timm (like torchvision and mmseg's ``contract_dilation=True``) runs the first block of a
    dilated stage at the previous stage's dilation; mmseg's ``ResNet`` default
    (``contract_dilation=False``, used by the SlotCon VOC/Cityscapes configs) does not.
    """
    net_stride, dilation = 4, 1
    for i in (2, 3, 4):
        if net_stride >= output_stride:
            dilation *= 2
        else:
            net_stride *= 2
        layer = getattr(model, f"layer{i}", None)
        if dilation == 1 or layer is None or len(layer) == 0:
            continue
        first = layer[0]
        conv = first.conv2 if hasattr(first, "conv3") else first.conv1  # Bottleneck vs BasicBlock
        conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)


@MODELS.register_module()
class ObjsslTimmBackbone(TimmDenseFeatures, BaseModule):
    """Any timm model as an mmseg backbone: ``forward(x [B, 3, H, W]) -> tuple`` of ``[B, C_i, H/s_i, W/s_i]``.

    Args:
        model_name: any ``timm.list_models()`` name.
        out_indices: timm ``feature_info`` indices of the returned maps (ResNet: 1..4 are
            layer1..layer4, so mmseg's ``in_index=3`` is layer4). Default: every map of stride >= 4.
        output_stride: 8 or 16 dilate the last stages (ResNets and other timm models that accept
            ``output_stride``): 8 is FCN-D8, 16 the SlotCon VOC/Cityscapes setting.
        contract_dilation: ResNets: True (timm's, mmseg's ``ResNetV1c`` D8 configs) runs the first
            block of a dilated stage at half dilation; False (mmseg ``ResNet`` default) does not.
        norm_cfg: ``dict(type="SyncBN" | "BN" | "FrozenBN")``: what the BatchNorms become (None:
            keep timm's). LayerNorm models keep theirs.
        norm_eval: keep BatchNorm statistics frozen (eval mode) while training.
        frozen_stages: -1 trains everything; 0 freezes the stem; i also the first i levels.
        simple_pyramid: ViTs: strides 4/8/16/32 from the stride-16 map (new weights).
        timm_kwargs: more ``timm.create_model`` keywords (``drop_path_rate``, ``img_size``, ...).
        init_cfg: ``dict(type="Pretrained", checkpoint=PATH, which="teacher", strict=True)``;
            ``prefix="backbone."`` takes the backbone out of a whole segmentor's checkpoint.
    """

    def __init__(
        self,
        model_name: str,
        out_indices: Sequence[int] | None = None,
        output_stride: int | None = None,
        contract_dilation: bool = True,
        norm_cfg: dict[str, Any] | None = None,
        norm_eval: bool = False,
        frozen_stages: int = -1,
        simple_pyramid: bool = False,
        timm_kwargs: dict[str, Any] | None = None,
        init_cfg: dict[str, Any] | list[dict[str, Any]] | None = None,
    ) -> None:
        kwargs = dict(timm_kwargs or {})
        if output_stride is not None:
            if output_stride not in (8, 16, 32):
                raise UserError(f"ObjsslTimmBackbone: output_stride={output_stride}: choose 8, 16 or 32")
            kwargs["output_stride"] = output_stride
        super().__init__(
            model_name,
            out_indices=tuple(out_indices) if out_indices is not None else None,
            simple_pyramid=simple_pyramid,
            **kwargs,
        )
        self.init_cfg = copy.deepcopy(init_cfg)
        if not contract_dilation and output_stride in (8, 16) and hasattr(self.model, "layer4"):
            _uncontract_first_dilation(self.model, output_stride)
        if norm_cfg is not None:
            kind = norm_cfg.get("type")
            if kind not in _NORM_TYPES:
                raise UserError(f"ObjsslTimmBackbone: norm_cfg type {kind!r}: choose BN, SyncBN or FrozenBN")
            self.convert_norm(_NORM_TYPES[kind])
        self.norm_eval = norm_eval
        self.freeze(frozen_stages + 1)
        #: channels of the returned maps, for the decode head's ``in_channels``
        self.out_channels = self.channels

    def init_weights(self) -> None:
        """Load ``init_cfg=dict(type="Pretrained", checkpoint=...)`` with objssl's keyed report."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get("type") == "Pretrained":
            checkpoint = cfg.get("checkpoint")
            if not checkpoint:
                raise UserError("ObjsslTimmBackbone: init_cfg type Pretrained needs checkpoint=PATH")
            report: WeightsReport = self.load_weights(
                checkpoint, which=cfg.get("which", "teacher"), strict=cfg.get("strict", True),
                prefix=cfg.get("prefix"),
            )
            print_log(f"ObjsslTimmBackbone({self.model_name}): {report.summary()}", logger="current")
            self._is_init = True
            return
        super().init_weights()

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(TimmDenseFeatures.forward(self, x))

    def train(self, mode: bool = True) -> ObjsslTimmBackbone:
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self
