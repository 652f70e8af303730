import pytest
import torch

from objssl.backbones import create_backbone
from objssl.checkpoint import save_checkpoint
from objssl.errors import UserError
from objssl.evaluation.checkpoints import load_eval_backbone


@pytest.fixture(scope="module")
def objssl_checkpoint(tmp_path_factory):
    """An objssl checkpoint of test_resnet whose online and target backbones differ."""
    torch.manual_seed(1)
    online, target = create_backbone("test_resnet"), create_backbone("test_resnet")
    model = {f"online.backbone.model.{k}": v for k, v in online.model.state_dict().items()}
    model.update({f"target.backbone.model.{k}": v for k, v in target.model.state_dict().items()})
    model["online.byol_global.projector.fc.weight"] = torch.zeros(2, 2)
    state = {"method": "byol", "backbone": {"name": "test_resnet", "kwargs": {}}, "model": model}
    path = save_checkpoint(state, str(tmp_path_factory.mktemp("run")), 7, keep_last=1)
    return path, online, target


def _same_weights(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_objssl_checkpoint_online_and_target(objssl_checkpoint):
    path, online, target = objssl_checkpoint
    got = load_eval_backbone(path)
    assert got.source == "objssl" and got.name == "test_resnet" and not got.module.training
    assert _same_weights(got.module, online)
    assert _same_weights(load_eval_backbone(path, branch="target").module, target)
    assert load_eval_backbone(path).fingerprint == got.fingerprint != load_eval_backbone(path, branch="target").fingerprint


def test_checkpoint_for_another_backbone_names_the_file(objssl_checkpoint, tmp_path):
    path = objssl_checkpoint[0]
    with pytest.raises(UserError, match=f"{path}: a checkpoint of backbone 'test_resnet', not of --backbone 'resnet18'"):
        load_eval_backbone(path, "resnet18")
    export = tmp_path / "timm.pth"
    torch.save(objssl_checkpoint[2].model.state_dict(), export)
    got = load_eval_backbone(str(export), "test_resnet")
    assert got.source == "timm" and _same_weights(got.module, objssl_checkpoint[2])
    with pytest.raises(UserError, match=f"{export}: not weights of backbone 'test_vit'"):
        load_eval_backbone(str(export), "test_vit")
    with pytest.raises(UserError, match="give --backbone NAME"):
        load_eval_backbone(str(export))
    with pytest.raises(UserError, match="does not exist"):
        load_eval_backbone(str(tmp_path / "nope.pth"), "test_resnet")


def test_random_init_is_seeded_and_leaves_the_rng_alone():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    a = load_eval_backbone("random", "test_resnet")
    assert torch.equal(torch.get_rng_state(), before)
    b = load_eval_backbone("timm:test_resnet")
    assert a.source == b.source == "random" and _same_weights(a.module, b.module)
    with pytest.raises(UserError, match="needs --backbone"):
        load_eval_backbone("random")
    with pytest.raises(UserError, match="but --backbone is"):
        load_eval_backbone("timm:test_resnet", "resnet18")
