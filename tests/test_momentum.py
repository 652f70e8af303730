import math

import pytest
import torch
from torch import nn

from objssl.momentum import cosine_momentum, ema_update, make_momentum_copy


def test_cosine_schedule_endpoints_and_midpoint():
    assert cosine_momentum(0, 100) == pytest.approx(0.99)
    assert cosine_momentum(100, 100) == pytest.approx(1.0)
    assert cosine_momentum(50, 100) == pytest.approx(0.995)
    # the ORL/SoCo formula, literally
    for k in (0, 13, 77):
        assert cosine_momentum(k, 100) == pytest.approx(1 - (1 - 0.99) * (math.cos(math.pi * k / 100) + 1) / 2)
    values = [cosine_momentum(k, 100) for k in range(101)]
    assert values == sorted(values)


def test_copy_is_frozen_eager_and_independent():
    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    teacher = make_momentum_copy(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    with torch.no_grad():
        student[0].weight.add_(1)
    assert not torch.equal(student[0].weight, teacher[0].weight)


def test_ema_update_formula():
    student = nn.Linear(2, 2)
    teacher = make_momentum_copy(student)
    t0 = teacher.weight.clone()
    with torch.no_grad():
        student.weight.fill_(1.0)
    ema_update(teacher, student, 0.9)
    torch.testing.assert_close(teacher.weight, 0.9 * t0 + 0.1 * torch.ones(2, 2))
    ema_update(teacher, student, 1.0)  # m = 1 leaves the teacher unchanged
    torch.testing.assert_close(teacher.weight, 0.9 * t0 + 0.1 * torch.ones(2, 2))
