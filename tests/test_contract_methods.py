"""Every registered method and every shipped compose config honours the method contract end to end:
build → transform → collate_fn → forward → backward → EMA update → state dict → rebuild from a checkpoint
→ the exported timm state dict loads strictly into timm. A newly registered method is tested by being registered."""

from pathlib import Path

import pytest
import timm
import torch

import objssl  # noqa: F401 - registers the built-in methods
from objssl.backbones import create_backbone
from objssl.config import load_config
from objssl.data import demo_images
from objssl.methods import create_method, method_from_checkpoint
from objssl.methods.checks import tiny_kwargs
from objssl.registry import METHODS, OBJECTIVES

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("compose_*.yaml"))
IMAGE_SIZE = 64


def _small_compose(method_cfg):
    objectives = [{**tiny_kwargs(OBJECTIVES.get(o["name"])), **{k: v for k, v in o.items() if k in ("name", "weight")}}
                  for o in method_cfg["objectives"]]
    return {**method_cfg, "objectives": objectives, "image_size": IMAGE_SIZE}


CASES = [pytest.param({"name": n}, id=n) for n in METHODS.names() if n != "compose"]
CASES += [pytest.param(_small_compose(load_config(str(p))["method"]), id=p.name) for p in CONFIGS]


@pytest.mark.parametrize("method_cfg", CASES)
def test_method_contract_end_to_end(method_cfg, demo_proposals, demo_correspondence, tmp_path):
    from objssl.export.timm import export_timm

    cls = METHODS.get(method_cfg["name"])
    if method_cfg["name"] != "compose":
        method_cfg = {**method_cfg, **tiny_kwargs(cls), "image_size": IMAGE_SIZE}
    cls.check_config(method_cfg)
    data_cfg = {"proposals": demo_proposals if cls.needs_proposals(method_cfg) else None, "min_side": 32,
                "correspondence": demo_correspondence if "correspondence" in cls.uses_data else None}
    paths = demo_images()[:4]
    cls.check_data(paths, {"method": method_cfg, "data": data_cfg})
    kwargs = {k: v for k, v in method_cfg.items() if k != "name"}
    torch.manual_seed(0)
    method = create_method(method_cfg["name"], create_backbone("test_resnet"), **kwargs)

    dataset = method.build_dataset(paths, {"data": data_cfg})
    batch = method.collate_fn([dataset[(i, i)] for i in range(len(paths))])
    out = method(batch)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert all(isinstance(v, torch.Tensor) and v.numel() == 1 for v in out.values())
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.online["backbone"].parameters())
    assert all(p.grad is None for p in method.target.parameters())
    before = [p.clone() for p in method.target["backbone"].parameters()]
    with torch.no_grad():
        for p in method.online.parameters():
            p.add_(0.01)
    m = method.update_target(0, 10)
    assert m == method.momentum and any(not torch.equal(b, a) for b, a in zip(before, method.target["backbone"].parameters()))

    ckpt = {"method": method_cfg["name"], "backbone": {"name": "test_resnet", "kwargs": {}}, "model": method.state_dict(),
            "config": {"method": method_cfg, "backbone": {"name": "test_resnet", "kwargs": {}}}}
    rebuilt = method_from_checkpoint(ckpt)
    assert all(torch.equal(v, rebuilt.state_dict()[k]) for k, v in ckpt["model"].items())

    export_timm(ckpt, str(tmp_path / "b.pth"))
    model = timm.create_model("test_resnet", num_classes=0)
    model.load_state_dict(torch.load(tmp_path / "b.pth", weights_only=True), strict=True)
