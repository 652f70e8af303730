"""Export a checkpoint's backbone as a plain timm state dict.

The file loads with ``timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=OUT),
num_classes=0)`` (or ``model.load_state_dict(torch.load(OUT))`` on ``timm.create_model(NAME,
num_classes=0)``, strictly); a classifier for fine-tuning is created fresh by timm.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from objssl.export.common import ExportReport, backbone_state_dict
from objssl.registry import EXPORTERS

__all__ = ["export_timm"]


@EXPORTERS.register("timm")
def export_timm(ckpt: dict[str, Any], out_path: str, *, which: str = "teacher") -> ExportReport:
    """Write the ``which`` backbone's timm weights to ``out_path`` (``.pth`` or ``.safetensors``)."""
    sd = {k: v.detach().clone().contiguous() for k, v in backbone_state_dict(ckpt, which).items()}
    os.makedirs(os.path.dirname(os.path.abspath(out_path)) or ".", exist_ok=True)
    if out_path.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(sd, out_path)
    else:
        torch.save(sd, out_path)
    skipped = sorted(
        {k.split(".")[1] for k in ckpt["model"] if not k.startswith(("online.backbone.", "target.backbone."))}
    )
    report = ExportReport(written=sorted(sd))
    if skipped:
        report.notes.append(f"not exported (not part of a timm backbone): {', '.join(skipped)}")
    report.notes.append(
        f"load with timm.create_model({ckpt['backbone']['name']!r}, pretrained=True, "
        f"pretrained_cfg_overlay=dict(file={out_path!r}), num_classes=0)"
    )
    return report
