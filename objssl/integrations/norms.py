"""What a detector or segmenter does to a pretrained timm model's norms and early layers:
BatchNorm → BN / SyncBN / FrozenBN, and freezing the stem and the first levels.

Nothing here imports detectron2 or mmseg.
"""

from __future__ import annotations

from torch import nn

from objssl.errors import UserError

__all__ = ["NORMS", "convert_norm", "freeze_units", "freeze_frozen_batchnorms"]

#: norm options, as detectron2 spells them (mmseg's ``norm_cfg`` types map onto these)
NORMS = ("BN", "SyncBN", "FrozenBN")


def convert_norm(model: nn.Module, norm: str) -> nn.Module:
    """``model`` with its BatchNorms as ``"BN"`` (as is), ``"SyncBN"`` or ``"FrozenBN"`` (returned:
    the top module may be replaced). LayerNorm/GroupNorm models have no BatchNorm and stay as they are."""
    from timm.layers import convert_sync_batchnorm, freeze_batch_norm_2d

    if norm not in NORMS:
        raise UserError(f"norm {norm!r} is not supported: choose one of {', '.join(NORMS)}")
    if norm == "SyncBN":
        return convert_sync_batchnorm(model)
    if norm == "FrozenBN":
        # statistics and affine terms become buffers, as detectron2's FrozenBN
        return freeze_batch_norm_2d(model)
    return model


def freeze_units(model: nn.Module, stage_modules: list[str], num_units: int, model_name: str) -> list[str]:
    """Freeze the stem (unit 1) and then whole levels (units 2, 3, ...: the ``stage_modules``, stride 4, 8, ...).

    ``num_units`` 0 freezes nothing (the self-supervised transfer setting, detectron2's
    ``FREEZE_AT 0``); detectron2's ``FREEZE_AT k`` is ``num_units=k``, mmseg's
    ``frozen_stages=i`` is ``num_units=i + 1``. Frozen parameters stop requiring gradients and
    BatchNorms whose parameters are all frozen become ``FrozenBatchNorm2d``.

    Returns:
        the names of the frozen parameters.
    """
    if num_units < 0:
        raise UserError(f"freeze: number of frozen units must be >= 0, got {num_units}")
    levels = len(stage_modules)
    if num_units > levels + 1:
        raise UserError(f"freeze: {model_name!r} has a stem and {levels} levels; cannot freeze {num_units}")
    if num_units == 0:
        return []
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    ends = []
    for name in stage_modules:
        sub = [i for n, i in order.items() if n == name or n.startswith(name + ".")]
        ends.append((min(sub), max(sub)))

    # unit of a module position: 0 = stem (before the first level starts), j+1 = level j
    # (everything after level j-1 ends, up to where level j ends), levels+1 = after the last
    def unit(pos: int) -> int:
        if pos < ends[0][0]:
            return 0
        for j, (_, end) in enumerate(ends):
            if pos <= end:
                return j + 1
        return levels + 1

    frozen = []
    for name, p in model.named_parameters():
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        if unit(order.get(owner, 0)) < num_units:
            p.requires_grad_(False)
            frozen.append(name)
    freeze_frozen_batchnorms(model)
    return frozen


def freeze_frozen_batchnorms(model: nn.Module) -> None:
    """Turn every BatchNorm whose parameters all stopped requiring gradients into ``FrozenBatchNorm2d``."""
    from timm.layers import freeze_batch_norm_2d

    for name, module in list(model.named_modules()):
        params = list(module.parameters(recurse=False))
        if not isinstance(module, nn.modules.batchnorm._BatchNorm) or not params:
            continue
        if any(p.requires_grad for p in params):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        parent.add_module(child, freeze_batch_norm_2d(module))
