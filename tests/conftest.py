"""Shared fixtures (real photos on disk, a tiny training config) and the rule for optional extras.

Optional extras: a test that needs one is marked with its name (``@pytest.mark.d2``, ``mmseg``,
``ss``, ``faiss``; see :data:`EXTRAS`), or calls the ``require_extra`` fixture; it is skipped,
with the install command as the reason, when the extra is missing. A test that needs a CUDA device
is marked ``gpu`` (and skips itself without one).

With ``OBJSSL_REQUIRE_EXTRAS=1`` (CI sets it: .ci/run) no test may skip except for a missing GPU:
every other skip, whatever raised it (the markers above, ``skipif``, ``pytest.skip``,
``importorskip``, a module-level skip, a fixture such as labelme's examples), is reported as a
failure naming the reason. The project's tests only skip for a missing extra or GPU, so CI cannot
pass by leaving a required part untested.
"""

import errno
import importlib.util
import os
import re
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

REQUIRE_EXTRAS_ENV = "OBJSSL_REQUIRE_EXTRAS"

#: a skip whose reason says this is a GPU skip (these stay skips under OBJSSL_REQUIRE_EXTRAS=1)
_GPU_REASON = re.compile(r"\b(CUDA|GPU)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Extra:
    """An optional extra: the modules it provides and how to install it."""

    modules: tuple[str, ...]
    install: str

    def missing(self) -> str | None:
        """Why the extra cannot be used here, or None when it can."""
        absent = [m for m in self.modules if importlib.util.find_spec(m) is None]
        return f"{', '.join(absent)} not installed" if absent else None


class SelectiveSearchExtra(Extra):
    """opencv-contrib's selective search: a plain opencv-python installed over it keeps ``cv2`` but
    loses ``cv2.ximgproc``, so the factory itself is checked."""

    def missing(self) -> str | None:
        reason = super().missing()
        if reason:
            return reason
        import cv2

        ximgproc = getattr(getattr(cv2, "ximgproc", None), "segmentation", None)
        if not callable(getattr(ximgproc, "createSelectiveSearchSegmentation", None)):
            return "cv2.ximgproc.segmentation.createSelectiveSearchSegmentation is missing (opencv-contrib)"
        return None


#: marker name -> the optional extra a test marked with it needs
EXTRAS: dict[str, Extra] = {
    "d2": Extra(("detectron2",), "bash transfer/install.sh d2 (objssl[d2])"),
    "mmseg": Extra(("mmseg", "mmengine", "mmcv"), "bash transfer/install.sh mmseg (objssl[mmseg])"),
    "ss": SelectiveSearchExtra(("cv2", "objssl_selective_search"),
                               "pip install objssl[ss] -e plugins/objssl-selective-search"),
    "faiss": Extra(("faiss",), "pip install objssl[faiss]"),
    "wds": Extra(("webdataset", "braceexpand"), "pip install objssl[wds]"),
}


def skip_unless_extra(name: str) -> None:
    """Skip the running test when optional extra ``name`` (a key of :data:`EXTRAS`) is missing."""
    if name not in EXTRAS:
        raise KeyError(f"unknown optional extra {name!r}; known: {', '.join(sorted(EXTRAS))}")
    extra = EXTRAS[name]
    reason = extra.missing()
    if reason:
        pytest.skip(f"needs the optional extra {name!r} ({reason}): {extra.install}")


class RequireExtras:
    """Under ``OBJSSL_REQUIRE_EXTRAS=1``: a skip other than a GPU skip is a failure.

    Registered as a plugin (not as conftest hooks) so that it sees every test of the session,
    plugins/*/tests included, not only those under tests/.
    """

    @staticmethod
    def _reason(report) -> str:
        lr = report.longrepr
        reason = str(lr[2] if isinstance(lr, tuple) and len(lr) == 3 else lr)
        return reason.removeprefix("Skipped: ")

    def _fail(self, report, reason: str) -> None:
        report.outcome = "failed"
        report.longrepr = (f"{REQUIRE_EXTRAS_ENV}=1: skipping is not allowed (only a missing GPU may skip); "
                           f"skip reason: {reason}")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = self._reason(report)
            if item.get_closest_marker("gpu") is None and not _GPU_REASON.search(reason):
                self._fail(report, reason)
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(self, collector):
        report = yield
        if report.skipped:  # a module-level skip or importorskip
            reason = self._reason(report)
            if not _GPU_REASON.search(reason):
                self._fail(report, reason)
        return report


class ExtraMarkers:
    """Skips a test marked with an extra's name (or ``gpu``) when that extra (a CUDA device) is missing."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        for name in EXTRAS:
            if item.get_closest_marker(name) is not None:
                skip_unless_extra(name)
        if item.get_closest_marker("gpu") is not None:
            import torch

            if not torch.cuda.is_available():
                pytest.skip("needs a CUDA device")


def pytest_configure(config):
    for name, extra in EXTRAS.items():
        config.addinivalue_line("markers", f"{name}: needs the optional extra {name!r} ({extra.install})")
    config.addinivalue_line("markers", "gpu: needs a CUDA device")
    # plugins, not conftest hooks: these apply to every test of the session (plugins/*/tests too)
    if not config.pluginmanager.has_plugin("objssl-extra-markers"):
        config.pluginmanager.register(ExtraMarkers(), "objssl-extra-markers")
    if os.environ.get(REQUIRE_EXTRAS_ENV) == "1" and not config.pluginmanager.has_plugin("objssl-require-extras"):
        config.pluginmanager.register(RequireExtras(), "objssl-require-extras")


@pytest.fixture
def one_torch_thread():
    """This process computes with one thread, as the subprocesses a test compares it with
    (``OMP_NUM_THREADS=1``, also what torchrun sets): CPU kernels sum in another order with
    another thread count, so bitwise comparisons across processes need equal counts."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def require_extra():
    """``require_extra(name)``: skip this test unless optional extra ``name`` is installed (for a need
    found at run time; otherwise mark the test ``@pytest.mark.<name>``)."""
    return skip_unless_extra


@pytest.fixture(scope="session")
def demo_proposals(tmp_path_factory) -> str:
    """A proposal cache of random boxes (``--source random``) for the demo photos."""
    from objssl.cli import main

    cache = tmp_path_factory.mktemp("demo_proposals") / "cache"
    assert main(["proposals", "--source", "random", "--out", str(cache), "--no-progress"]) == 0
    return str(cache)


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """12 real photo crops (scikit-image's CC0 photos) as small JPEGs in a folder."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(0)
    for i in range(12):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        y, x = rng.integers(0, h // 3), rng.integers(0, w // 3)
        crop = img[y : y + 2 * h // 3, x : x + 2 * w // 3]
        Image.fromarray(crop).resize((96, 80)).save(folder / f"img_{i:02d}.jpg", quality=90)
    return folder


def _tiny_config(out, data, **train):
    from objssl.config import apply_overrides, load_config

    cfg = apply_overrides(load_config(), [
        "backbone.name=test_resnet", "method.proj_hidden_dim=32", "method.pred_hidden_dim=32",
        "method.proj_dim=16", "method.image_size=48", f"data.path={data}", "data.num_workers=0",
        f"train.out={out}", "train.batch_size=4", "train.max_steps=3", "train.progress=false",
        "optim.warmup_steps=1", "optim.lr=0.5",
    ])
    return apply_overrides(cfg, [f"train.{k}={v}" for k, v in train.items()])


@pytest.fixture
def tiny_config():
    """``tiny_config(out, data, **train_overrides)``: BYOL on a 0.3M-parameter timm model."""
    return _tiny_config


class _FullDiskFile:
    """A file object that accepts ``room`` bytes, then fails as a full disk does (ENOSPC)."""

    def __init__(self, f, room: int) -> None:
        self._f, self.room = f, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(room=0)``: from then on, files opened by ``os.fdopen`` (objssl's atomic writes) take
    ``room`` bytes and then fail with ENOSPC."""

    def fill(room: int = 0) -> None:
        real_fdopen = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: _FullDiskFile(real_fdopen(fd, mode, *a, **k), room))

    return fill


def _write_correspondence(folder, images, boxes, neighbours, pairs):
    """A real stage-2 folder (:mod:`objssl.correspondence.format`'s writers): ``boxes[i]`` xyxy boxes of
    image ``i``, ``neighbours[i]`` its k neighbour indices, ``pairs[i][slot]`` ``(query box index,
    neighbour box index)`` pairs into ``boxes[i]`` and ``boxes[neighbours[i][slot]]``."""
    from objssl.correspondence import format as fmt

    k = len(neighbours[0]) if neighbours else 0
    fmt.write_knn(str(folder), list(images), np.array(neighbours, dtype=np.int32).reshape(len(images), k),
                  np.full((len(images), k), 0.5))
    fmt.write_box_shard(str(folder), 0, 0, [np.array(b, dtype=np.float32).reshape(-1, 4) for b in boxes], None)
    fmt.write_pair_shard(str(folder), 0, 0, k, [
        [(np.array(p, dtype=np.int64).reshape(-1, 2), np.linspace(1, 0.5, len(p))) for p in per_image]
        for per_image in pairs])
    fmt.write_meta(str(folder), k=k, num_images=len(images), shards=[(0, len(images))])
    return str(folder)


@pytest.fixture
def write_correspondence():
    """``write_correspondence(folder, images, boxes, neighbours, pairs)``: write a stage-2 folder, return it."""
    return _write_correspondence


@pytest.fixture(scope="session")
def demo_correspondence(tmp_path_factory):
    """A stage-2 folder over every demo photo: 6 grid boxes each, its next two photos as neighbours,
    3 pairs per neighbour."""
    from objssl.data import demo_images, image_size

    images = demo_images()
    boxes = []
    for path in images:
        w, h = image_size(path)
        boxes.append([[x * w // 4, y * h // 3, (x + 2) * w // 4, (y + 1) * h // 3 + h // 3]
                      for y in range(2) for x in range(3)][:6])
    n = len(images)
    neighbours = [[(i + 1) % n, (i + 2) % n] for i in range(n)]
    pairs = [[[(s, (s + i) % 6), (s + 2, 1), (5, 0)] for s in range(2)] for i in range(n)]
    return _write_correspondence(tmp_path_factory.mktemp("stage2"), images, boxes, neighbours, pairs)
