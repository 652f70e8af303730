"""Export an objssl checkpoint for mmsegmentation: ``objssl export CKPT --to mmseg -o OUT.pth``.

The file is ``{"state_dict": {...}, "meta": {...}}`` with backbone-relative keys, to be named in a
config as the backbone's ``init_cfg=dict(type="Pretrained", checkpoint=OUT)`` (or the model's
``pretrained=OUT``). Two kinds of target backbone (``arch``):

* ``"mmseg-resnet"`` — mmseg's own ``ResNet`` (timm ``resnet18``…``resnet152``: identical keys),
  ``ResNetV1c`` (timm ``resnet50c``: deep stem, ``conv1.N``/``bn1`` → ``stem.N``/``stem.7``) or
  ``ResNetV1d`` (timm ``resnet50d``: deep stem and average-pool shortcut), so that stock FCN
  configs work. The names and shapes are checked against a real mmseg model when mmseg is
  installed.
* ``"objssl"`` — ``ObjsslTimmBackbone`` (:mod:`objssl.integrations.mmseg`), for any timm model:
  keys ``model.<timm key>``. (That backbone also reads objssl checkpoints directly.)

``"auto"`` (default) picks ``mmseg-resnet`` for those ResNets, else ``objssl``.
"""

from __future__ import annotations

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
from objssl.export.output import save_torch_output
from objssl.registry import EXPORTERS

__all__ = ["mmseg_resnet_spec", "timm_resnet_to_mmseg", "export_mmseg"]

ARCHS = ("auto", "mmseg-resnet", "objssl")
_BLOCK_KEY = re.compile(r"^layer[1-4]\.\d+\.(conv[1-3]|bn[1-3]|downsample\.[0-2])\.")

def mmseg_resnet_spec(sd: dict[str, Tensor]) -> dict[str, Any] | None:
    """``dict(type=ResNet|ResNetV1c|ResNetV1d, depth=..., stem_channels=...)`` for a timm ResNet, else None."""
    deep = "conv1.0.weight" in sd
    if deep:
        stem_ok = all(re.match(r"^(conv1\.[01346]|bn1)\.", k) for k in sd if k.startswith(("conv1.", "bn1.")))
        stem_channels = int(sd["conv1.6.weight"].shape[0]) if "conv1.6.weight" in sd else 0
    else:
        stem_ok = "conv1.weight" in sd and sd["conv1.weight"].shape[-1] == 7
        stem_channels = int(sd["conv1.weight"].shape[0]) if stem_ok else 0
    if not stem_ok or not stem_channels or "bn1.running_mean" not in sd:
        return None
    if not all(_BLOCK_KEY.match(k) for k in sd if not k.startswith(("conv1.", "bn1."))):
        return None
    layout = resnet_layout(sd)
    if layout is None:
        return None
    kind, depth = layout
    if kind == "bottleneck" and sd["layer1.0.conv2.weight"].shape[1] != sd["layer1.0.conv1.weight"].shape[0]:
        return None  # grouped convs: a ResNeXt
    if sd["layer1.0.conv1.weight"].shape[0] != (64 if kind == "bottleneck" else stem_channels):
        return None  # wide ResNets
    avg_down = any(k.startswith("layer2.0.downsample.2.") for k in sd)
    kind_name = "ResNetV1d" if avg_down else ("ResNetV1c" if deep else "ResNet")
    if avg_down and not deep:
        return None
    return dict(type=kind_name, depth=depth, stem_channels=stem_channels)


def timm_resnet_to_mmseg(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """timm ResNet keys → mmseg ``ResNet``/``ResNetV1c``/``ResNetV1d`` keys (the deep stem is renamed)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("conv1.") and k[len("conv1."):][0].isdigit():
            k = "stem." + k[len("conv1."):]
        elif k.startswith("bn1.") and "conv1.0.weight" in sd:
            k = "stem.7." + k[len("bn1."):]
        out[k] = v
    return out


def _verify_against_mmseg(keys: dict[str, tuple[int, ...]], spec: dict[str, Any]) -> str:
    try:
        from objssl.export import _mmcv_ext_stub

        _mmcv_ext_stub.install()
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    except ImportError:
        return ""
    register_all_modules(init_default_scope=False)
    with torch.device("meta"):
        model = MODELS.build(dict(spec, norm_cfg=dict(type="SyncBN", requires_grad=True)))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_renamed_keys(keys, expected, f"mmseg's {spec['type']}-{spec['depth']}")
    return f"names and shapes checked against mmseg's {spec['type']} depth {spec['depth']} ({len(expected)} tensors)"


def _part_name(key: str) -> str:
    """``online.neck.*`` → ``neck``; a head of an objective term, ``online.<term>.<head>.*`` → ``<head> (<term>)``."""
    segs = key.split(".")
    if segs[1] == "neck" or len(segs) < 4:
        return segs[1]
    return f"{segs[2]} ({segs[1]})"


@EXPORTERS.register("mmseg")
def export_mmseg(ckpt: dict[str, Any], out_path: str, *, which: str = "teacher", arch: str = "auto") -> ExportReport:
    """Write the ``which`` backbone as an mmseg backbone checkpoint (``.pth``).

    Returns:
        :class:`ExportReport`: ``written`` = mmseg backbone keys, ``skipped`` = backbone (timm)
        keys not written (layers the target does not have), ``notes`` = the target and its config.
    """
    if arch not in ARCHS:
        raise UserError(f"mmseg export: arch={arch!r}: choose one of {', '.join(ARCHS)}")
    if not out_path.endswith(".pth"):
        raise UserError(f"mmseg export: output {out_path!r} must end in .pth")
    name = backbone_name(ckpt)
    sd = backbone_state_dict(ckpt, which)
    spec = mmseg_resnet_spec(sd)
    if arch == "auto":
        arch = "mmseg-resnet" if spec is not None else "objssl"
    report = ExportReport()
    skipped: list[str] = []
    if arch == "mmseg-resnet":
        if spec is None:
            raise UserError(
                f"mmseg export: backbone {name!r} is not a ResNet that mmseg's ResNet/ResNetV1c/"
                "ResNetV1d can hold; use arch='objssl' (ObjsslTimmBackbone)"
            )
        out = timm_resnet_to_mmseg(sd)
        checked = _verify_against_mmseg({k: tuple(v.shape) for k, v in out.items()}, spec)
        report.notes.append(
            f"target: mmseg backbone=dict(type={spec['type']!r}, depth={spec['depth']}, "
            f"stem_channels={spec['stem_channels']}, style='pytorch', init_cfg=dict(type='Pretrained', "
            f"checkpoint={out_path!r}))"
        )
        report.notes.append(checked or "names not checked: mmseg is not installed here")
    else:
        kept = set(dense_model_on_meta(name, ckpt["backbone"].get("kwargs")).state_dict())
        missing = sorted(kept - set(sd))
        if missing:
            raise UserError(
                f"mmseg export: checkpoint lacks {len(missing)} tensors of backbone {name!r} "
                f"(e.g. {', '.join(missing[:3])}): another architecture?"
            )
        out = {"model." + k: v for k, v in sd.items() if k in kept}
        skipped = sorted(k for k in sd if k not in kept)
        report.notes.append(
            f"target: backbone=dict(type='ObjsslTimmBackbone', model_name={name!r}, init_cfg="
            f"dict(type='Pretrained', checkpoint={out_path!r})) with custom_imports "
            "objssl.integrations.mmseg; skipped keys belong to layers a dense model does not use"
        )
    other = sorted({_part_name(k) for k in checkpoint_model(ckpt)
                    if k.startswith(branch_prefix(which) + ".") and k.split(".")[1] != "backbone"})
    if other:
        report.notes.append(f"not exported ({which} parts without an mmseg counterpart): {', '.join(other)}")
    out = {k: v.detach().to("cpu").contiguous() for k, v in out.items()}
    meta = {"objssl": {"backbone": name, "which": which, "method": ckpt.get("method"), "arch": arch}}
    save_torch_output({"state_dict": out, "meta": meta}, out_path, "mmseg export")
    report.written = sorted(out)
    report.skipped = skipped
    return report
