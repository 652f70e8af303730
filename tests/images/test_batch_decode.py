"""Batched JPEG decode: the batch path (on the CPU here, nvJPEG on a GPU), the per-file fallback, bad files."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from objssl.config import apply_overrides, load_config, validate_config
from objssl.errors import ConfigError
from objssl.images import batch_decode
from objssl.images.batch_decode import decode_batch, decode_device
from objssl.images.decode import BadImageError, load_rgb


def _jpeg(seed: int, size=(64, 48), **kwargs) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    a = np.stack([x * 4 % 256, y * 5 % 256, np.full_like(x, 40 * seed % 256)], -1).astype(np.uint8)
    a = np.clip(a.astype(int) + rng.integers(-10, 10, a.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=90, **kwargs)
    return buf.getvalue()


def _reference(data: bytes) -> torch.Tensor:
    from objssl.images.decode import rgb_from_bytes

    return torch.from_numpy(np.asarray(rgb_from_bytes(data)).copy()).permute(2, 0, 1)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    # libjpeg-turbo in torchvision vs Pillow's: equal here, a few grey levels apart where builds differ
    assert a.shape == b.shape and a.dtype == torch.uint8
    diff = (a.int() - b.int()).abs()
    assert diff.float().mean() <= 1.0 and diff.max() <= 16


@pytest.fixture
def batch():
    good = [_jpeg(i) for i in range(4)]
    corrupt = good[1][: len(good[1]) // 2]  # a JPEG cut short: its header reads, its data does not
    return [good[0], corrupt, good[2], b"\xff\xd8\xff\xe0 not a jpeg", good[3]], good


def test_a_corrupt_file_in_the_batch_falls_back_per_file_and_is_returned_as_bad(batch, monkeypatch):
    datas, good = batch
    calls = []
    real = batch_decode._device_decode
    monkeypatch.setattr(batch_decode, "_device_decode", lambda ts, dev: calls.append(len(ts)) or real(ts, dev))
    out = decode_batch(datas, [f"f{i}.jpg" for i in range(5)], device="cpu")
    # one batched call of the 4 JPEG headers that read (it fails on the cut one), then one per file
    assert calls == [4, 1, 1, 1, 1]
    assert isinstance(out[1], BadImageError) and out[1].path == "f1.jpg" and "truncated" in out[1].reason
    assert isinstance(out[3], BadImageError) and out[3].path == "f3.jpg"
    for i, g in zip((0, 2, 4), (good[0], good[2], good[3])):
        _close(out[i], _reference(g))


def test_a_clean_batch_is_one_call_and_matches_pillow(monkeypatch):
    datas = [_jpeg(i, size=(40 + 8 * i, 32)) for i in range(3)]
    calls = []
    real = batch_decode._device_decode
    monkeypatch.setattr(batch_decode, "_device_decode", lambda ts, dev: calls.append(len(ts)) or real(ts, dev))
    out = decode_batch(datas)
    assert calls == [3]
    for o, d in zip(out, datas):
        _close(o, _reference(d))


def test_files_the_device_decoder_would_get_wrong_go_through_pillow(tmp_path, monkeypatch):
    buf = io.BytesIO()
    Image.new("RGBA", (40, 30), (10, 200, 30, 128)).save(buf, format="PNG")
    png = buf.getvalue()
    buf = io.BytesIO()
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(buf, format="JPEG")
    cmyk = buf.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: Pillow applies it, so must the result
    rotated = _jpeg(5, exif=exif.tobytes())
    monkeypatch.setattr(batch_decode, "_device_decode", lambda ts, dev: pytest.fail("batched a file Pillow must decode"))
    out = decode_batch([png, cmyk, rotated], device="cpu")
    for o, d, name in zip(out, (png, cmyk, rotated), ("p.png", "c.jpg", "r.jpg")):
        path = tmp_path / name
        path.write_bytes(d)
        assert torch.equal(o, torch.from_numpy(np.asarray(load_rgb(path)).copy()).permute(2, 0, 1))
    assert out[2].shape[1:] == (64, 48)  # 64x48 stored, rotated by 90 degrees


def test_min_side_and_empty_files_are_refused_like_load_rgb():
    out = decode_batch([_jpeg(0, size=(20, 10)), b""], ["small.jpg", "empty.jpg"], min_side=16)
    assert [type(o) for o in out] == [BadImageError, BadImageError]
    assert "smaller than min_side=16" in out[0].reason and "empty file" in out[1].reason


def test_decode_setting():
    assert decode_device("cpu") == "cpu"
    assert decode_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="data.decode='gpu'"):
        decode_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            decode_device("cuda")
    cfg = apply_overrides(load_config(), ["data.decode=fast"])
    with pytest.raises(ConfigError, match="data.decode must be auto, cpu or cuda"):
        validate_config(cfg)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (nvJPEG decode)")
def test_gpu_batch_decode_with_a_corrupt_file(batch):
    datas, good = batch
    out = decode_batch(datas, device="cuda")
    assert isinstance(out[1], BadImageError) and isinstance(out[3], BadImageError)
    for i, g in zip((0, 2, 4), (good[0], good[2], good[3])):
        assert out[i].device.type == "cuda"
        _close(out[i].cpu(), _reference(g))
