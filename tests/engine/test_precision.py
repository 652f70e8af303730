"""Autocast paths run on CPU too (bf16, fp16 with a grad scaler); GPU runs use the same code."""

import pytest
import torch

from objssl.engine import Trainer


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_steps_are_finite(tmp_path, photo_folder, tiny_config, precision):
    tr = Trainer(tiny_config(tmp_path / precision, photo_folder, max_steps=2, precision=precision))
    assert tr.amp_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert tr.scaler.is_enabled() == (precision == "fp16")
    summary = tr.fit()
    assert summary["step"] == 2 and summary["nonfinite_total"] == 0
    assert all(torch.isfinite(v).all() for v in tr.method.state_dict().values() if v.is_floating_point())
    # weights stay fp32 (autocast only lowers the compute)
    assert {p.dtype for p in tr.method.parameters()} == {torch.float32}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_bf16_channels_last_step(tmp_path, photo_folder, tiny_config):
    tr = Trainer(tiny_config(tmp_path / "gpu", photo_folder, max_steps=2, device="cuda", channels_last=True))
    assert tr.amp_dtype == torch.bfloat16
    assert tr.fit()["nonfinite_total"] == 0
