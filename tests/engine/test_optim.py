import math

import pytest
import torch
from torch import nn

from objssl.config import load_config
from objssl.engine.optim import build_optimizer, build_scheduler, scaled_lr, warmup_steps_for
from objssl.errors import ConfigError


def _cfg(**kw):
    cfg = load_config()["optim"]
    cfg.update(kw)
    return cfg


def test_linear_scaling_rule():
    assert scaled_lr(_cfg(lr=1.0), 512) == 2.0
    assert scaled_lr(_cfg(lr=0.4, lr_scaling="none"), 512) == 0.4


def test_lars_excludes_1d_params_from_decay_and_adaptation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    opt = build_optimizer(model, _cfg(name="lars", weight_decay=1e-5, momentum=0.9), lr=0.5)
    assert type(opt).__name__ == "Lars"
    groups = {len(g["params"]): g for g in opt.param_groups}
    decayed = [g for g in opt.param_groups if g["weight_decay"] > 0]
    assert len(decayed) == 1 and all(p.ndim > 1 for p in decayed[0]["params"])
    no_decay = [p for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]]
    assert sorted(p.ndim for p in no_decay) == [1, 1, 1]  # linear bias, BN weight and bias
    assert groups  # two groups
    # a 1-d parameter is stepped like plain SGD: no trust-ratio scaling
    bias = model[0].bias
    before = bias.detach().clone()
    bias.grad = torch.full_like(bias, 0.1)
    model[0].weight.grad = torch.zeros_like(model[0].weight)
    model[1].weight.grad = torch.zeros_like(model[1].weight)
    model[1].bias.grad = torch.zeros_like(model[1].bias)
    opt.step()
    torch.testing.assert_close(bias.detach(), before - 0.5 * 0.1)


def test_lars_adapts_weights_with_trust_ratio():
    torch.manual_seed(0)
    lin = nn.Linear(4, 3, bias=False)
    opt = build_optimizer(lin, _cfg(name="lars", weight_decay=0.0001, momentum=0.9), lr=1.0)
    w = lin.weight.detach().clone()
    g = torch.randn_like(w)
    lin.weight.grad = g.clone()
    opt.step()
    d = g + 0.0001 * w
    trust = 0.001 * w.norm() / d.norm()
    torch.testing.assert_close(lin.weight.detach(), w - trust * d, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name, cls", [("sgd", "SGD"), ("adamw", "AdamW"), ("lars", "Lars")])
def test_timm_optimizers(name, cls):
    opt = build_optimizer(nn.Linear(2, 2), _cfg(name=name), lr=0.1)
    assert type(opt).__name__ == cls


def test_unknown_optimizer_is_config_error():
    with pytest.raises(ConfigError, match="optim.name='sgdd'"):
        build_optimizer(nn.Linear(2, 2), _cfg(name="sgdd"), lr=0.1)


def test_warmup_then_cosine_per_iteration():
    model = nn.Linear(2, 2)
    cfg = _cfg(name="sgd", warmup_start_ratio=0.01, min_lr=1e-6)
    opt = build_optimizer(model, cfg, lr=2.0)
    total, warm = 110, 10
    sched = build_scheduler(opt, cfg, 2.0, total, warm)

    def lr_at(step):
        sched.step_update(step)
        return opt.param_groups[0]["lr"]

    assert lr_at(0) == pytest.approx(0.02)
    assert lr_at(5) == pytest.approx(0.02 + (2.0 - 0.02) * 5 / 10)
    assert lr_at(10) == pytest.approx(2.0)
    assert lr_at(60) == pytest.approx(1e-6 + (2.0 - 1e-6) * 0.5 * (1 + math.cos(math.pi * 50 / 100)))
    assert lr_at(110) == pytest.approx(1e-6, abs=1e-9)
    assert warmup_steps_for(_cfg(warmup_epochs=2.5), steps_per_epoch=4, total_steps=100) == 10
    assert warmup_steps_for(_cfg(warmup_steps=7), steps_per_epoch=4, total_steps=100) == 7
    assert warmup_steps_for(_cfg(warmup_epochs=10), steps_per_epoch=4, total_steps=5) == 4
