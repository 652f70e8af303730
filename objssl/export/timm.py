"""Export a checkpoint's backbone as a plain timm state dict.

The file loads with ``timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=OUT),
num_classes=0)`` (or ``model.load_state_dict(torch.load(OUT))`` on ``timm.create_model(NAME,
num_classes=0)``, strictly); a classifier for fine-tuning is created fresh by timm.
"""

from __future__ import annotations

from typing import Any

from objssl.export.common import ExportReport, backbone_name, backbone_state_dict, checkpoint_model
from objssl.export.output import save_bytes_output, save_torch_output
from objssl.registry import EXPORTERS

__all__ = ["export_timm"]


@EXPORTERS.register("timm")
def export_timm(ckpt: dict[str, Any], out_path: str, *, which: str = "teacher") -> ExportReport:
    """Write the ``which`` backbone's timm weights to ``out_path`` (``.pth`` or ``.safetensors``)."""
    name = backbone_name(ckpt)
    sd = {k: v.detach().clone().contiguous() for k, v in backbone_state_dict(ckpt, which).items()}
    if out_path.endswith(".safetensors"):
        from safetensors.torch import save

        save_bytes_output(save(sd), out_path, "timm export")
    else:
        save_torch_output(sd, out_path, "timm export")
    skipped = sorted(
        {k.split(".")[1] for k in checkpoint_model(ckpt) if not k.startswith(("online.backbone.", "target.backbone."))}
    )
    report = ExportReport(written=sorted(sd))
    if skipped:
        report.notes.append(f"not exported (not part of a timm backbone): {', '.join(skipped)}")
    report.notes.append(
        f"load with timm.create_model({name!r}, pretrained=True, "
        f"pretrained_cfg_overlay=dict(file={out_path!r}), num_classes=0)"
    )
    return report
