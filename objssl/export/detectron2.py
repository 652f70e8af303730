"""Export an objssl checkpoint for detectron2: ``objssl export CKPT --to detectron2 -o OUT.pkl``.

Two kinds of target model (``arch``):

* ``"d2-resnet"`` — detectron2's own ResNet (``build_resnet_fpn_backbone`` /
  ``build_resnet_backbone``), so that stock configs work: timm's ResNet keys are renamed to
  detectron2's (``conv1`` → ``stem.conv1``, ``bn1`` → ``stem.conv1.norm``, ``layer1`` → ``res2``,
  ``bnK`` → ``convK.norm``, ``downsample.0/1`` → ``shortcut``/``shortcut.norm``). Works for timm's
  torchvision-style ResNets and ResNeXts (``resnet18`` … ``resnet152``, ``resnext50_32x4d``,
  ``wide_resnet50_2``); set ``MODEL.RESNETS.STRIDE_IN_1X1 False`` and RGB input with torchvision
  mean/std (the transfer configs in ``transfer/detectron2/configs`` do).
* ``"objssl"`` — objssl's detectron2 backbones (``build_objssl_fpn_backbone``, ``build_objssl_c4_backbone``
  in :mod:`objssl.integrations.detectron2`), for any timm model: the keys are the model's own
  (``backbone.bottom_up.model.<timm key>``).

``"auto"`` (default) picks ``d2-resnet`` when the backbone is such a ResNet, else ``objssl``.

The file has the model's exact key names (``matching_heuristics`` is off), for the chosen
``layout``: ``"fpn"`` (``backbone.bottom_up.…``) or ``"c4"`` (``backbone.…`` up to res4, res5 under
``roi_heads.res5.…``). ``norm`` says whether the target model's BatchNorms keep a
``num_batches_tracked`` counter (``"SyncBN"``/``"BN"``) or not (``"FrozenBN"``, detectron2's
default), so that loading reports no missing or unexpected keys. When detectron2 is installed the
``d2-resnet`` names and shapes are checked against a real detectron2 ResNet before writing.

``.pkl`` files hold numpy arrays (detectron2's own format); ``.pth`` files hold tensors.

Methods whose checkpoints carry detector parts (SoCo's FPN and box head) register a mapper with
:func:`objssl.export.detectron2_parts.register_d2_part_mapper`; its keys are added for ``layout="fpn"``.
"""

from __future__ import annotations

import pickle
import re
from typing import Any

import torch
from torch import Tensor

from objssl.errors import UserError
from objssl.export.common import (
    ExportReport,
    backbone_name,
    backbone_state_dict,
    branch_prefix,
    check_renamed_keys,
    checkpoint_model,
    resnet_layout,
)
from objssl.export.dense_model import dense_model_on_meta
from objssl.export.detectron2_parts import D2_PART_MAPPERS, register_d2_part_mapper
from objssl.export.output import save_bytes_output, save_torch_output
from objssl.registry import EXPORTERS

__all__ = [
    "D2_PART_MAPPERS",
    "register_d2_part_mapper",
    "resnet_spec",
    "timm_resnet_to_d2",
    "export_detectron2",
]

ARCHS = ("auto", "d2-resnet", "objssl")
LAYOUTS = ("fpn", "c4")
NORMS = ("SyncBN", "BN", "FrozenBN")

# ------------------------------------------------------------------------------------ ResNet
_RESNET_KEY = re.compile(r"^(conv1|bn1|layer[1-4]\.\d+\.(conv[1-3]|bn[1-3]|downsample\.[01]))\.")

def resnet_spec(sd: dict[str, Tensor]) -> dict[str, Any] | None:
    """detectron2 ``MODEL.RESNETS`` settings that rebuild this timm ResNet, or None if it is not one.

    Only torchvision-style ResNets/ResNeXts qualify: a single 7x7 stem conv, ``layer1..4`` of
    BasicBlocks or Bottlenecks with a conv downsample, and nothing else (no SE, no deep stem).
    """
    if "conv1.weight" not in sd or sd["conv1.weight"].shape[-1] != 7 or "bn1.running_mean" not in sd:
        return None  # deep stems and GroupNorm ResNets have no detectron2 counterpart
    if not all(_RESNET_KEY.match(k) for k in sd):
        return None
    layout = resnet_layout(sd)
    if layout is None:
        return None
    kind, depth = layout
    conv2 = sd["layer1.0.conv2.weight"]
    if kind == "bottleneck":
        groups = sd["layer1.0.conv1.weight"].shape[0] // conv2.shape[1]
        width = conv2.shape[0] // groups
        res2_out = sd["layer1.0.conv3.weight"].shape[0]
    else:
        groups, width, res2_out = 1, 64, conv2.shape[0]
    return dict(DEPTH=depth, NUM_GROUPS=int(groups), WIDTH_PER_GROUP=int(width),
                RES2_OUT_CHANNELS=int(res2_out), STEM_OUT_CHANNELS=int(sd["conv1.weight"].shape[0]),
                STRIDE_IN_1X1=False)


def _d2_resnet_key(key: str) -> str:
    """One timm ResNet key → detectron2's (``layer2.0.bn1.weight`` → ``res3.0.conv1.norm.weight``)."""
    if key.startswith("conv1."):
        return "stem." + key
    if key.startswith("bn1."):
        return "stem.conv1.norm." + key[len("bn1."):]
    stage, block, rest = key.split(".", 2)
    stage = f"res{int(stage[len('layer'):]) + 1}"
    rest = re.sub(r"^bn(\d)\.", r"conv\1.norm.", rest)
    rest = rest.replace("downsample.0.", "shortcut.").replace("downsample.1.", "shortcut.norm.")
    return f"{stage}.{block}.{rest}"


def timm_resnet_to_d2(sd: dict[str, Tensor], *, layout: str = "fpn", norm: str = "SyncBN") -> tuple[dict[str, Tensor], list[str]]:
    """Rename a timm ResNet state dict to a detectron2 Mask R-CNN's keys.

    Returns:
        ``(d2 state dict, timm keys left out)`` — only ``num_batches_tracked`` counters are left
        out, and only for ``norm="FrozenBN"`` (FrozenBN has none).
    """
    out: dict[str, Tensor] = {}
    left_out = []
    for k, v in sd.items():
        if norm == "FrozenBN" and k.endswith("num_batches_tracked"):
            left_out.append(k)
            continue
        d2 = _d2_resnet_key(k)
        if layout == "fpn":
            d2 = "backbone.bottom_up." + d2
        elif d2.startswith("res5."):
            d2 = "roi_heads." + d2
        else:
            d2 = "backbone." + d2
        out[d2] = v
    return out, left_out


def _verify_against_detectron2(keys: dict[str, tuple[int, ...]], spec: dict[str, Any], layout: str, norm: str) -> str:
    """Compare names and shapes with a detectron2 ResNet built from ``spec``; '' if d2 is missing."""
    try:
        from detectron2.config import get_cfg
        from detectron2.layers import ShapeSpec
        from detectron2.modeling.backbone.resnet import build_resnet_backbone
    except ImportError:
        return ""
    cfg = get_cfg()
    for k, v in spec.items():
        setattr(cfg.MODEL.RESNETS, k, v)
    cfg.MODEL.RESNETS.NORM = norm
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    with torch.device("meta"):
        resnet = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    expected = {}
    for k, v in resnet.state_dict().items():
        if layout == "fpn":
            k = "backbone.bottom_up." + k
        else:
            k = ("roi_heads." if k.startswith("res5.") else "backbone.") + k
        expected[k] = tuple(v.shape)
    check_renamed_keys(keys, expected, f"detectron2's ResNet-{spec['DEPTH']}")
    return f"names and shapes checked against detectron2's ResNet-{spec['DEPTH']} ({len(expected)} tensors)"


# ------------------------------------------------------------------------------------ objssl
def _objssl_backbone_keys(name: str, layout: str, kwargs: dict[str, Any]) -> dict[str, str]:
    """timm key → detectron2 key for objssl's registered backbones (built on the meta device)."""
    model = dense_model_on_meta(name, kwargs)
    if layout == "fpn":
        return {k: "backbone.bottom_up.model." + k for k in model.state_dict()}
    if not hasattr(model, "layer4"):
        raise UserError(f"layout 'c4' needs a ResNet-style model with layer4 (res5); {name!r} has none")
    out = {}
    for k in model.state_dict():
        if k.startswith("layer4."):
            out[k] = "roi_heads.res5." + k[len("layer4."):]
        else:
            out[k] = "backbone.model." + k
    return out


# ------------------------------------------------------------------------------------ export
@EXPORTERS.register("detectron2")
def export_detectron2(
    ckpt: dict[str, Any],
    out_path: str,
    *,
    which: str = "teacher",
    arch: str = "auto",
    layout: str = "fpn",
    norm: str = "SyncBN",
) -> ExportReport:
    """Write the ``which`` backbone (and mapped detector parts) as a detectron2 checkpoint.

    Args:
        ckpt: a loaded objssl checkpoint (:func:`objssl.export.common.load_checkpoint`).
        out_path: ``.pkl`` (numpy arrays, detectron2's format) or ``.pth`` (tensors).
        which: ``"teacher"`` (default) or ``"student"``.
        arch: ``"auto"``, ``"d2-resnet"`` (detectron2's ResNet) or ``"objssl"`` (objssl's backbones).
        layout: ``"fpn"`` or ``"c4"`` (Mask R-CNN FPN or C4 key names).
        norm: the target's backbone norm: ``"SyncBN"``/``"BN"`` keep BN counters, ``"FrozenBN"`` not.

    Returns:
        :class:`ExportReport`: ``written`` = detectron2 keys, ``skipped`` = backbone (timm) keys
        not written, ``notes`` = the target, how to use it, parts not exported.
    """
    for value, choices, what in ((arch, ARCHS, "arch"), (layout, LAYOUTS, "layout"), (norm, NORMS, "norm")):
        if value not in choices:
            raise UserError(f"detectron2 export: {what}={value!r}: choose one of {', '.join(choices)}")
    if not out_path.endswith((".pkl", ".pth")):
        raise UserError(f"detectron2 export: output {out_path!r} must end in .pkl or .pth")
    name = backbone_name(ckpt)
    sd = backbone_state_dict(ckpt, which)
    spec = resnet_spec(sd)
    if arch == "auto":
        arch = "d2-resnet" if spec is not None else "objssl"
    report = ExportReport()
    if arch == "d2-resnet":
        if spec is None:
            raise UserError(
                f"detectron2 export: backbone {name!r} is not a torchvision-style ResNet that "
                "detectron2's ResNet can hold; use arch='objssl' (objssl's detectron2 backbone)"
            )
        if layout == "c4" and spec["DEPTH"] < 50:
            raise UserError(
                f"detectron2 export: detectron2's C4 ROI head (Res5ROIHeads) builds res5 from bottleneck "
                f"blocks, so ResNet-{spec['DEPTH']} cannot fill it; use arch='objssl' "
                "(ObjsslRes5ROIHeads takes the timm layer4 as it is) or layout='fpn'"
            )
        out, skipped = timm_resnet_to_d2(sd, layout=layout, norm=norm)
        checked = _verify_against_detectron2({k: tuple(v.shape) for k, v in out.items()}, spec, layout, norm)
        report.notes.append(
            f"target: detectron2's ResNet ({layout.upper()}): MODEL.RESNETS "
            + " ".join(f"{k}={v}" for k, v in spec.items()) + f" NORM={norm}"
        )
        report.notes.append(checked or "names not checked: detectron2 is not installed here")
    else:
        mapping = _objssl_backbone_keys(name, layout, dict(ckpt.get("backbone", {}).get("kwargs") or {}))
        out, skipped = {}, []
        for k, v in sd.items():
            if k not in mapping or (norm == "FrozenBN" and k.endswith("num_batches_tracked")):
                skipped.append(k)
            else:
                out[mapping[k]] = v
        missing = sorted(set(mapping) - set(sd) - {k for k in mapping if k.endswith("num_batches_tracked") and norm == "FrozenBN"})
        if missing:
            raise UserError(
                f"detectron2 export: checkpoint lacks {len(missing)} tensors of backbone {name!r} "
                f"(e.g. {', '.join(missing[:3])}): another architecture?"
            )
        report.notes.append(
            f"target: objssl's detectron2 backbone (MODEL.BACKBONE.NAME "
            f"build_objssl_{layout}_backbone, MODEL.OBJSSL.NAME {name!r}); skipped keys belong to "
            "layers the detector does not use"
        )
    method = ckpt.get("method")
    mapper = D2_PART_MAPPERS.get(method)
    other = sorted({k.split(".")[1] for k in checkpoint_model(ckpt)
                    if k.startswith(branch_prefix(which) + ".") and k.split(".")[1] != "backbone"})
    extra = mapper(ckpt, which) if mapper is not None and layout == "fpn" else {}
    if extra:
        out.update(extra)
        report.notes.append(f"{method} parts mapped to detectron2: {len(extra)} tensors")
    elif other:
        report.notes.append(f"not exported ({which} parts without a detectron2 counterpart): {', '.join(other)}")
    out = {k: v.detach().to("cpu").contiguous() for k, v in out.items()}
    meta = {"backbone": name, "which": which, "method": method, "arch": arch, "layout": layout, "norm": norm}
    if out_path.endswith(".pkl"):
        payload = {"model": {k: v.numpy() for k, v in out.items()}, "__author__": "objssl",
                   "matching_heuristics": False, "objssl": meta}
        save_bytes_output(pickle.dumps(payload), out_path, "detectron2 export")
    else:
        save_torch_output({"model": out, "__author__": "objssl", "matching_heuristics": False, "objssl": meta},
                          out_path, "detectron2 export")
    report.written = sorted(out)
    report.skipped = sorted(skipped)
    report.notes.append(f"load with MODEL.WEIGHTS {out_path} (exact names; matching_heuristics off)")
    return report
