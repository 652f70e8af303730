"""Exporters: turn an objssl checkpoint into weights another framework loads.

``EXPORTERS`` (in :mod:`objssl.registry`) maps a target name to ``export(ckpt, out_path, *,
which="teacher", **opts) -> ExportReport``. The detectron2 and mmseg exporters import their
frameworks only when called. :func:`objssl.export.checks.check_exporter` is the contract every
exporter meets (round trip on a real checkpoint).

Layering: :mod:`objssl.integrations` imports from here, never the other way round.
"""

from objssl.export.common import (
    ExportReport,
    backbone_state_dict,
    load_checkpoint,
    part_state_dict,
)
from objssl.export import detectron2 as _d2_exporter  # noqa: F401 - registers; detectron2 loads only when called
from objssl.export import mmseg as _mmseg_exporter  # noqa: F401 - registers; mmseg loads only when called
from objssl.export.timm import export_timm

__all__ = ["ExportReport", "backbone_state_dict", "load_checkpoint", "part_state_dict", "export_timm"]
