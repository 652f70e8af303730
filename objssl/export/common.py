"""Reading objssl checkpoints and pulling out the weights of one part (backbone, neck, head).

An objssl checkpoint is a ``torch.save`` dict::

    {"format": "objssl-checkpoint", "version": 1, "method": "byol",
     "backbone": {"name": "resnet50", "kwargs": {...}},
     "model": <method.state_dict()>, "config": {...}, ...training state...}

Inside ``model`` the online (student) parts sit under ``online.<part>.`` and the EMA teacher's under
``target.<part>.``; a backbone's weights are under ``<branch>.backbone.model.`` with exactly timm's
keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from objssl.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from objssl.errors import UserError

__all__ = [
    "CHECKPOINT_FORMAT",
    "ExportReport",
    "load_checkpoint",
    "branch_prefix",
    "checkpoint_model",
    "backbone_name",
    "part_state_dict",
    "backbone_state_dict",
    "resnet_layout",
    "check_renamed_keys",
]

_BRANCHES = {"teacher": "target", "target": "target", "student": "online", "online": "online"}


@dataclass
class ExportReport:
    """What an exporter wrote and what it deliberately left out (never silently)."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"wrote {len(self.written)} tensors, skipped {len(self.skipped)}"]
        if self.skipped:
            shown = ", ".join(self.skipped[:8]) + (" ..." if len(self.skipped) > 8 else "")
            lines.append(f"skipped: {shown}")
        lines.extend(self.notes)
        return "\n".join(lines)


def branch_prefix(which: str) -> str:
    """``"teacher"``/``"target"`` → ``"target"``; ``"student"``/``"online"`` → ``"online"``."""
    try:
        return _BRANCHES[which]
    except KeyError:
        raise UserError(f"which={which!r}: choose 'teacher' or 'student'") from None


def checkpoint_model(ckpt: Any) -> dict[str, Tensor]:
    """``ckpt["model"]``, or a one-line error for a dict that is no objssl checkpoint."""
    model = ckpt.get("model") if isinstance(ckpt, dict) else None
    if not isinstance(model, dict):
        raise UserError(
            "not an objssl checkpoint: it has no 'model' state dict (load it with objssl.checkpoint.load_checkpoint "
            "from OUT/checkpoints/*.pth)"
        )
    return model


def backbone_name(ckpt: Any) -> str:
    """The timm name in ``ckpt["backbone"]["name"]``, or a one-line error."""
    backbone = ckpt.get("backbone") if isinstance(ckpt, dict) else None
    if not isinstance(backbone, dict) or not isinstance(backbone.get("name"), str):
        raise UserError("not an objssl checkpoint: it has no 'backbone' entry with the backbone's name")
    return backbone["name"]


def part_state_dict(ckpt: dict[str, Any], part: str, which: str = "teacher") -> dict[str, Tensor]:
    """Weights of one part (``"backbone"``, ``"neck"``, ``"head"``, ...) with the prefix removed.

    The teacher has no predictor; asking for a part the checkpoint lacks returns ``{}``.
    """
    prefix = f"{branch_prefix(which)}.{part}."
    return {k[len(prefix):]: v for k, v in checkpoint_model(ckpt).items() if k.startswith(prefix)}


def backbone_state_dict(ckpt: dict[str, Any], which: str = "teacher") -> dict[str, Tensor]:
    """The backbone's weights with timm's own keys (they load into ``timm.create_model(name)``)."""
    sd = part_state_dict(ckpt, "backbone.model", which)
    if not sd:
        raise UserError(
            f"checkpoint has no {which} backbone weights (looked for "
            f"'{branch_prefix(which)}.backbone.model.*')"
        )
    return sd


#: (block kind, blocks per stage) → ResNet depth, for the torchvision-style layouts frameworks rebuild
_RESNET_DEPTHS = {
    ("basic", (2, 2, 2, 2)): 18,
    ("basic", (3, 4, 6, 3)): 34,
    ("bottleneck", (3, 4, 6, 3)): 50,
    ("bottleneck", (3, 4, 23, 3)): 101,
    ("bottleneck", (3, 8, 36, 3)): 152,
}


def resnet_layout(sd: dict[str, Tensor]) -> tuple[str, int] | None:
    """``(block kind, depth)`` of a timm ResNet state dict (``layer1..4``), or None if it has another layout.

    ``kind`` is ``"basic"`` or ``"bottleneck"``; stages must hold consecutively numbered blocks.
    """
    blocks = []
    for i in range(1, 5):
        idx = {int(k.split(".")[1]) for k in sd if k.startswith(f"layer{i}.")}
        if not idx or idx != set(range(len(idx))):
            return None
        blocks.append(len(idx))
    kind = "bottleneck" if "layer1.0.conv3.weight" in sd else "basic"
    depth = _RESNET_DEPTHS.get((kind, tuple(blocks)))
    return None if depth is None else (kind, depth)


def check_renamed_keys(keys: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], target: str) -> None:
    """Raise if renamed ``{key: shape}`` differ from a real ``target`` model's (an exporter bug, not a user error
    of the input): names the first missing, extra and mis-shaped keys."""
    if expected == keys:
        return
    missing = sorted(set(expected) - set(keys))[:5]
    extra = sorted(set(keys) - set(expected))[:5]
    shapes = [k for k in set(keys) & set(expected) if keys[k] != expected[k]][:5]
    raise UserError(
        f"internal check failed: renamed keys differ from {target} "
        f"(missing {missing}, extra {extra}, shapes {shapes}); please report this"
    )
