"""Reading backbone weights for a dense model: from an objssl checkpoint (teacher or student) or a
timm state-dict file, safely (tensors and plain data only), with a key-by-key :class:`WeightsReport`.

Nothing here imports detectron2 or mmseg.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from torch import Tensor

from objssl.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointCorruptError,
    check_checkpoint,
    safe_torch_load,
    verify_checkpoint,
)
from objssl.errors import UserError
from objssl.export.common import backbone_state_dict

__all__ = ["WeightsReport", "read_backbone_weights"]


@dataclass
class WeightsReport:
    """What loading pretrained weights into a dense model did, key by key.

    Attributes:
        source: where the weights came from (file, teacher/student, method, backbone name).
        loaded: model keys that received a tensor from the file.
        missing: model keys the file had no tensor for (they keep their random init).
        unexpected: file keys the model has no place for.
        dropped: file keys of layers the dense model does not use (after the last feature map,
            e.g. a classifier norm), and BN ``num_batches_tracked`` counters of frozen BNs.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f", ... ({len(keys)} in all)" if len(keys) > 6 else "")

        lines = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        if self.missing:
            lines.append(f"missing (left at their initialisation): {show(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected (in the file, not in the model): {show(self.unexpected)}")
        if self.dropped:
            lines.append(f"dropped (layers the dense model does not use): {show(self.dropped)}")
        return "\n".join(lines)


def _read(path: str) -> object:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as exc:
            raise UserError(f"pretrained weights {path!r} cannot be read: {type(exc).__name__}: {exc}") from exc
    reason = verify_checkpoint(path)  # damaged bytes are refused before anything is unpickled
    if reason is not None:
        raise CheckpointCorruptError(f"pretrained checkpoint {path!r} is damaged: {reason}")
    return safe_torch_load(path)


def read_backbone_weights(
    path: str | os.PathLike, *, which: str = "teacher", model_name: str | None = None, prefix: str | None = None
) -> tuple[dict[str, Tensor], str]:
    """Backbone weights with timm's keys from an objssl checkpoint or a timm state-dict file.

    Args:
        path: an objssl checkpoint, or a file of timm weights (``objssl export --to timm``,
            ``.pth``/``.safetensors``; a ``{"state_dict": ...}``/``{"model": ...}`` wrapper and
            ``backbone.``/``model.`` key prefixes are accepted). Only tensors and plain data are
            unpickled: a file holding other objects is refused with one line.
        which: ``"teacher"`` (EMA target, the default as in the official code) or ``"student"``.
        model_name: the timm name the weights are for; an objssl checkpoint whose backbone has
            another name is refused with an error naming both.
        prefix: for a state dict of a whole model (e.g. ``"backbone."``): keep only these keys.

    Returns:
        ``(state_dict, description of the source)``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"pretrained checkpoint {path!r} does not exist")
    obj = _read(path)
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        obj = check_checkpoint(obj, path)
        arch = (obj.get("backbone") or {}).get("name")
        if model_name is not None and arch is not None and arch != model_name:
            raise UserError(
                f"checkpoint {path!r} holds a {arch!r} backbone, but the model is built with "
                f"{model_name!r}: set the backbone name to {arch!r} or use a {model_name!r} checkpoint"
            )
        sd = backbone_state_dict(obj, which)
        return sd, f"{path} ({which} backbone {arch!r} of an objssl {obj.get('method', '?')!r} checkpoint)"
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise UserError(
            f"{path!r} is neither an objssl checkpoint nor a state dict of tensors "
            "(expected OUT/checkpoints/*.pth from objssl pretrain, or objssl export --to timm)"
        )
    if prefix:
        obj = {k[len(prefix):]: v for k, v in obj.items() if k.startswith(prefix)}
        if not obj:
            raise UserError(f"{path!r} has no tensors under prefix {prefix!r}")
    for strip in ("backbone.", "model."):
        if all(k.startswith(strip) for k in obj):
            obj = {k[len(strip):]: v for k, v in obj.items()}
    return dict(obj), f"{path} (timm state dict)"
