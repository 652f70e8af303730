import os

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import objssl.evaluation.features as features
from objssl.backbones import create_backbone
from objssl.evaluation.datasets import read_image_folder
from objssl.evaluation.features import extract_features, feature_cache_key, svm_feature_kind
from objssl.evaluation.transforms import centre_crop_transform, transform_key, voc07_svm_transform
from objssl.images import load_rgb


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return create_backbone("test_resnet").eval()


def _extract(backbone, paths, transform, size, cache_dir, kind="pooled"):
    key = feature_cache_key("w", "test_resnet", kind, transform_key(transform), paths)
    return extract_features(backbone, paths, transform, image_size=size, kind=kind, batch_size=5,
                            cache_dir=cache_dir, cache_key=key, progress=False)


def test_second_run_reads_the_cache_and_another_transform_does_not(tmp_path, backbone, image_folders, monkeypatch):
    paths = read_image_folder(image_folders[0]).paths
    forwards = []
    original = features._forward
    monkeypatch.setattr(features, "_forward", lambda *a: forwards.append(1) or original(*a))
    first = _extract(backbone, paths, centre_crop_transform(32), 32, str(tmp_path))
    assert not first.from_cache and first.values.shape[0] == len(paths) and os.path.isfile(first.cache_file)
    assert len(forwards) == 4  # 18 images in batches of 5
    second = _extract(backbone, paths, centre_crop_transform(32), 32, str(tmp_path))
    assert second.from_cache and len(forwards) == 4 and torch.equal(second.values, first.values)
    other = _extract(backbone, paths, centre_crop_transform(40), 40, str(tmp_path))
    assert not other.from_cache and other.cache_file != first.cache_file and len(forwards) == 8
    assert len(os.listdir(tmp_path)) == 2
    os.utime(paths[0], ns=(1, 1))  # a retouched image: its listing changed, so no cache hit
    assert not _extract(backbone, paths, centre_crop_transform(32), 32, str(tmp_path)).from_cache


def test_unreadable_image_is_a_counted_skip(tmp_path, backbone, image_folders):
    paths = read_image_folder(image_folders[1]).paths[:4]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    got = _extract(backbone, paths[:2] + [str(bad)] + paths[2:], centre_crop_transform(32), 32, None)
    assert got.kept.tolist() == [0, 1, 3, 4] and got.values.shape[0] == 4
    assert [p for p, _ in got.skipped] == [str(bad)]
    ref = _extract(backbone, paths, centre_crop_transform(32), 32, None)
    torch.testing.assert_close(got.values, ref.values)


def test_feat5_is_res5_avgpool6_flattened(image_folders):
    r18 = create_backbone("resnet18").eval()
    assert svm_feature_kind(r18) == "feat5" and svm_feature_kind(create_backbone("test_vit")) == "pooled"
    paths = read_image_folder(image_folders[0]).paths[:2]
    transform = voc07_svm_transform(224)
    got = _extract(r18, paths, transform, 224, None, kind="feat5")
    assert got.values.shape == (2, 2 * 2 * 512)
    model = timm.create_model("resnet18", num_classes=0)
    model.load_state_dict(r18.model.state_dict())
    x = torch.stack([transform(load_rgb(p)) for p in paths])
    with torch.no_grad():
        ref = torch.nn.AvgPool2d(6, 1)(model.eval().forward_features(x)).reshape(2, -1)
    torch.testing.assert_close(got.values, ref, rtol=1e-4, atol=1e-5)


def test_transforms_sizes_and_normalisation():
    black = Image.new("RGB", (300, 200))
    out = voc07_svm_transform(224)(black)
    assert out.shape == (3, 224, 224)  # Resize(256) then Resize((224, 224)): the whole image, no crop
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(out[:, 0, 0].numpy(), -mean / std, rtol=1e-5)
    wide = Image.new("RGB", (400, 200))
    wide.paste((255, 255, 255), (0, 0, 100, 200))  # a white left quarter, cut off by the centre crop
    crop = centre_crop_transform(112)(wide)
    assert crop.shape == (3, 112, 112)
    np.testing.assert_allclose(crop[:, :, 0].mean(1).numpy(), -mean / std, rtol=1e-5)
    assert transform_key(centre_crop_transform(112)) != transform_key(centre_crop_transform(96))
