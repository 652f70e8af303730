"""The method contract: config and data checks before any model is built, the exact training transform
without a model, and version-1 checkpoints (renamed by the brief's table) loading into today's methods."""

import json
from pathlib import Path

import pytest
import torch

from objssl import create_backbone, create_method
from objssl.data.transforms import MultiViewTransform
from objssl.data.views import BoxAwareViews
from objssl.errors import ConfigError, DataError
from objssl.methods import method_transform
from objssl.registry import METHODS

V1 = json.loads((Path(__file__).parent / "v1_state_dict_layout.json").read_text())

# the version-1 → version-2 prefix renames, per method (objssl.checkpoint applies the same table on load)
V1_TO_V2 = {
    "byol": {"online.projector.": "online.byol_global.projector.", "online.predictor.": "online.byol_global.predictor.",
             "target.projector.": "target.byol_global.projector."},
    "soco": {"online.box_head.": "online.soco_boxes.box_head.", "online.projector.": "online.soco_boxes.projector.",
             "online.predictor.": "online.soco_boxes.predictor.", "target.box_head.": "target.soco_boxes.box_head.",
             "target.projector.": "target.soco_boxes.projector."},
    "soco_c4": {"online.projector.": "online.soco_c4_boxes.projector.",
                "online.predictor.": "online.soco_c4_boxes.predictor.",
                "target.projector.": "target.soco_c4_boxes.projector."},
    "slotcon": {"online.projector.": "online.slotcon.projector.", "online.grouping.": "online.slotcon.grouping.",
                "online.predictor.": "online.slotcon_slots.predictor.", "target.projector.": "target.slotcon.projector.",
                "target.grouping.": "target.slotcon.grouping.", "pixel_loss.": "objectives.slotcon_pixel."},
}
V1_TO_V2["soco_star"] = V1_TO_V2["soco"]


def _rename(key, table):
    for old, new in table.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


@pytest.mark.parametrize("name", sorted(V1["methods"]))
def test_v1_state_dict_renamed_by_the_table_loads_strictly(name):
    v1 = V1["methods"][name]
    torch.manual_seed(0)
    method = create_method(name, create_backbone("test_resnet"), **v1["kwargs"])
    current = method.state_dict()
    renamed = {_rename(k, V1_TO_V2[name]): torch.zeros(shape, dtype=current[_rename(k, V1_TO_V2[name])].dtype)
               for k, shape in v1["state"].items() if _rename(k, V1_TO_V2[name]) in current}
    assert len(renamed) == len(v1["state"]), "a renamed version-1 key is not in today's state dict"
    method.load_state_dict(renamed, strict=True)  # no key missing, none left over, every shape fits


def _reference_batch(name):
    """The batch the fixture's outputs were computed on (same seeds, same calls)."""
    import numpy as np

    from objssl.data import demo_images, load_rgb
    from objssl.data.collate import collate_views
    from objssl.data.dataset import ImageDataset
    from objssl.proposals import RandomSource

    torch.manual_seed(0)
    if name == "byol":
        return {"views": [torch.randn(4, 3, 64, 64), torch.randn(4, 3, 64, 64)]}
    if name == "slotcon":
        ds = ImageDataset(demo_images()[:4], BoxAwareViews.from_preset("slotcon", size=64))
        return collate_views([ds[(i, i)] for i in range(4)])
    views = BoxAwareViews.from_preset(name, size=64)
    samples = []
    for p in demo_images()[:4]:
        img = load_rgb(p)
        samples.append(views(img, boxes=RandomSource(n=60, scale=(0.15, 0.6))(np.array(img)).boxes))
    return collate_views(samples)


@pytest.mark.parametrize("name", sorted(V1["methods"]))
def test_losses_are_those_of_the_version_1_methods(name):
    """Same seed, same batch: the term-list methods give the numbers the pre-refactor methods gave."""
    v1 = V1["methods"][name]
    torch.manual_seed(0)
    method = create_method(name, create_backbone("test_resnet"), **v1["kwargs"])
    out = method(_reference_batch(name))
    assert set(out) == set(v1["outputs"])
    for key, value in v1["outputs"].items():
        assert out[key].item() == pytest.approx(value, abs=1e-6, rel=1e-6), key


@pytest.mark.parametrize("key, value, message", [
    ("image_size", "abc", "method.image_size='abc': method 'byol' expects an integer"),
    ("proj_hidden_dim", 0, "method.proj_hidden_dim=0: must be positive"),
    ("image_size", 7, "method.image_size=7: must be at least 32"),
    ("head_norm", 3, "method.head_norm=3: method 'byol' expects a string"),
    ("proj_dimm", 3, "unknown config key 'method.proj_dimm' for method 'byol'. Did you mean 'proj_dim'"),
])
def test_check_config_names_the_bad_key(key, value, message):
    with pytest.raises(ConfigError, match=message) as err:
        METHODS.get("byol").check_config({"name": "byol", key: value})
    assert "\n" not in str(err.value)


def test_check_config_accepts_yaml_lists_for_tuples_and_ints_for_floats():
    METHODS.get("soco").check_config({"name": "soco", "level_thresholds": [1, 2, 3, 4], "base_momentum": 1})
    with pytest.raises(ConfigError, match=r"group_loss_weight=2: must be in \[0, 1\]"):
        METHODS.get("slotcon").check_config({"name": "slotcon", "group_loss_weight": 2})


def _cfg(name, proposals):
    return {"method": {"name": name}, "data": {"proposals": proposals}}


def test_check_data_needs_proposals_covering_every_image(tmp_path):
    from objssl.cli import main
    from objssl.data import demo_images

    soco = METHODS.get("soco")
    with pytest.raises(ConfigError, match="soco needs region proposals: build a cache with `objssl proposals"):
        soco.check_data(demo_images(), _cfg("soco", None))
    METHODS.get("byol").check_data(demo_images(), _cfg("byol", None))  # reads no proposals
    cache = tmp_path / "cache"
    assert main(["proposals", "--source", "random", "--out", str(cache), "--no-progress"]) == 0
    soco.check_data(demo_images(), _cfg("soco", str(cache)))
    extra = [str(tmp_path / f"new_{i}.jpg") for i in range(5)]
    with pytest.raises(DataError, match=r"has no boxes for 5 of the \d+ images \(.*new_0.jpg.*\.\.\.\)") as err:
        soco.check_data(demo_images() + extra, _cfg("soco", str(cache)))
    assert "\n" not in str(err.value)
    # compose reads proposals only with views that carry boxes
    METHODS.get("compose").check_data(demo_images(), {"method": {"name": "compose", "views": "slotcon"}, "data": {}})
    with pytest.raises(ConfigError, match="needs region proposals"):
        METHODS.get("compose").check_data(demo_images(), {"method": {"name": "compose", "views": "soco"}, "data": {}})


def test_method_transform_is_what_the_method_trains_with():
    t = method_transform({"name": "byol", "image_size": 64}, {})
    assert isinstance(t, MultiViewTransform)  # BYOL trains with MultiViewTransform, not the "byol" view preset
    torch.manual_seed(0)
    method = create_method("byol", create_backbone("test_resnet"), image_size=64, proj_hidden_dim=16,
                           pred_hidden_dim=16, proj_dim=16)
    from PIL import Image

    img = Image.new("RGB", (80, 70), (120, 30, 200))
    torch.manual_seed(3)
    a = t(img)["views"]
    torch.manual_seed(3)
    b = method.build_transform({})(img)["views"]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    soco = method_transform({"name": "soco_star", "image_size": 64}, {"proposals": None})
    assert isinstance(soco, BoxAwareViews) and [v.hw for v in soco.views] == [(64, 64), (64, 64), (55, 55), (32, 32)]
    assert soco.proposals is None  # boxes are passed per call
    with pytest.raises(ConfigError, match="image_size=7"):
        method_transform({"name": "slotcon", "image_size": 7}, {})


def test_trainer_warns_when_proposals_are_given_to_a_method_that_reads_none(tmp_path, photo_folder, tiny_config, caplog):
    from objssl.config import apply_overrides
    from objssl.engine import Trainer

    cfg = apply_overrides(tiny_config(tmp_path / "run", photo_folder), [f"data.proposals={tmp_path}"])
    with caplog.at_level("WARNING", logger="objssl.train"):
        Trainer(cfg)
    assert any("does not read proposals" in r.getMessage() for r in caplog.records)


def test_a_transform_for_without_augment_on_still_trains_with_views_made_in_the_loader(
        tmp_path, photo_folder, tiny_config, caplog, monkeypatch):
    # a plugin method written before data.augment_on: its own transform, made in the loader
    from objssl.config import apply_overrides
    from objssl.engine import Trainer
    from objssl.methods import BYOL
    from objssl.registry import METHODS

    class OldStyle(BYOL):
        name = "old_style_byol"

        @classmethod
        def transform_for(cls, method_cfg, proposals=None):
            return BYOL.transform_for(method_cfg, proposals)

    monkeypatch.setitem(METHODS._objs, "old_style_byol", OldStyle)  # registered for this test only
    cfg = apply_overrides(tiny_config(tmp_path / "run", photo_folder, max_steps=1),
                          ["method.name=old_style_byol", "data.augment_on=device"])
    with caplog.at_level("WARNING"):
        trainer = Trainer(cfg)
        trainer.fit()
    assert trainer.parts.device_views is None and trainer.step == 1
    assert any("takes no augment_on argument" in r.getMessage() for r in caplog.records)
