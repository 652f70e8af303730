"""Views made on the device from encoded bytes (``decode_on="device"``): the loader reads the header
and draws, the device decodes the batch (``decode_batch``; on a CPU here, nvJPEG on a GPU) with the
same draws and pixels as a decode in the loader; a file that fails only then is a counted skip."""

import shutil

import pytest
import torch

from objssl.data import demo_images
from objssl.data.collate import collate_views
from objssl.data.dataset import ImageDataset
from objssl.data.device.encoded import DecodeOnDevice
from objssl.data.device.image_views import DeviceImageViews
from objssl.data.transforms import ViewAugmentation
from objssl.data.views import BoxAwareViews
from objssl.engine.build import resolve_decode_on
from objssl.errors import DataError

AUGS = [ViewAugmentation(size=48), ViewAugmentation(size=40, blur_p=0.1, solarize_p=0.2)]


def _views(kind):
    if kind == "byol":
        return DeviceImageViews(AUGS)
    return BoxAwareViews.from_preset("soco_star", size=64, augment_on="device")


def _pair(paths, kind, n):
    """The same samples decoded in the loader and sent encoded."""
    views = _views(kind)
    loader = ImageDataset(paths, views, min_side=8, reduced_decode=False)
    encoded = ImageDataset(paths, views, min_side=8, decode_on="device")
    return views, [loader[(i, 3 + i)] for i in range(n)], [encoded[(i, 3 + i)] for i in range(n)]


@pytest.mark.parametrize("kind", ["byol", "soco_star"])
def test_decoded_on_the_device_equals_decoded_in_the_loader(kind, one_torch_thread):
    views, loader, encoded = _pair(demo_images(), kind, 4)
    assert all("source" not in s and isinstance(s["encoded"], bytes) for s in encoded)
    a = views.device_views(collate_views(loader))
    b = DecodeOnDevice(views.device_views)(collate_views(encoded))
    assert set(a) == set(b)
    for key, value in a.items():
        if key == "views":
            for x, y in zip(value, b[key]):  # libjpeg-turbo behind both decoders on a CPU
                assert (x - y).abs().max() < 0.05
        elif isinstance(value, torch.Tensor):
            assert torch.equal(value, b[key]), key
        elif isinstance(value, list):
            assert all(torch.equal(x, y) for x, y in zip(value, b[key])), key


def test_a_file_that_fails_on_the_device_is_a_counted_skip(tmp_path, photo_folder, one_torch_thread, caplog):
    photos = sorted(photo_folder.glob("*.jpg"))[:4]
    for p in photos:
        shutil.copy(p, tmp_path / p.name)
    good = photos[0].read_bytes()
    (tmp_path / "img_01b_cut.jpg").write_bytes(good[: len(good) // 2])  # header reads, data does not
    (tmp_path / "img_02b_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")  # no header: loader skips
    paths = sorted(str(p) for p in tmp_path.glob("*.jpg"))
    views = _views("byol")
    data = ImageDataset(paths, views, min_side=8, decode_on="device")
    samples = [data[(i, i)] for i in range(len(paths))]
    # sorted: img_00, img_01, img_01b_cut, img_02, img_02b_broken, img_03; the broken header is
    # skipped in the loader (replaced by img_03), the cut file is sent
    assert [s["skipped"] for s in samples] == [0, 0, 0, 0, 1, 0]
    batch = DecodeOnDevice(views.device_views)(collate_views(samples))
    assert len(batch["views"][0]) == len(paths)  # the batch keeps its size
    # the cut file is found on the device: counted there, on top of the loader's skip
    assert int(batch["skipped"].sum()) == 2 and int(batch["skipped"][2]) == 1
    assert "img_01b_cut.jpg" in caplog.text and "replaced by another image of its batch" in caplog.text
    # a replaced sample took a good sample's parameters along with its image
    cut = [i for i, s in enumerate(samples) if s["encoded_path"].endswith("cut.jpg")]
    assert all(not torch.equal(batch["index"][i], torch.tensor(samples[i]["index"])) for i in cut)
    with pytest.raises(DataError, match="no image of a batch of 1 decodes"):
        DecodeOnDevice(views.device_views)(collate_views([samples[i] for i in cut]))


def test_the_bytes_are_sent_only_when_a_cuda_device_makes_the_views():
    cpu = torch.device("cpu")
    assert resolve_decode_on({"decode": "auto"}, "device", cpu) == "loader"
    assert resolve_decode_on({"decode": "auto"}, "loader", torch.device("cuda")) == "loader"
    with pytest.raises(ValueError, match="decode_on"):
        ImageDataset(demo_images(), _views("byol"), decode_on="gpu")


@pytest.mark.gpu
def test_cuda_decodes_the_batch_as_the_loader_does():
    from objssl.engine.setup import to_device

    views, loader, encoded = _pair(demo_images(), "soco_star", 4)
    a = views.device_views(collate_views(loader))
    cuda = torch.device("cuda")
    assert resolve_decode_on({"decode": "auto"}, "device", cuda) == "device"
    b = DecodeOnDevice(views.device_views)(to_device(collate_views(encoded), cuda, channels_last=False))
    assert b["source_hw"].is_cuda if "source_hw" in b else b["views"][0].is_cuda
    for x, y in zip(a["views"], b["views"]):  # nvJPEG vs libjpeg-turbo rounding, roi_align vs resize
        assert (x - y.cpu()).abs().mean() < 0.05


def test_an_image_decoded_to_another_size_than_its_header_is_a_counted_skip(one_torch_thread):
    views = _views("byol")
    data = ImageDataset(demo_images(), views, min_side=8, decode_on="device")
    samples = [data[(i, i)] for i in range(3)]
    samples[1]["encoded_hw"] = samples[1]["encoded_hw"] + 1  # as if the header lied about the size
    batch = DecodeOnDevice(views.device_views)(collate_views(samples))
    assert batch["skipped"].tolist() == [0, 1, 0] and "encoded_hw" not in batch
    index = batch["index"].tolist()  # replaced, with its parameters, by a good sample
    assert index[0] == 0 and index[2] == 2 and index[1] in (0, 2)
