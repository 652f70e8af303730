"""``objssl viz slots``: prototype scores as the official viz_slots defines them, and the PNG grid."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from objssl.cli import main
from objssl.data import demo_images
from objssl.export.common import load_checkpoint
from objssl.methods import method_from_checkpoint
from objssl.viz.slots import most_used_prototypes, prototype_scores


@pytest.fixture(scope="module")
def slotcon_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("slotcon")
    args = ["pretrain", "--method", "slotcon", "--backbone", "test_resnet", "--max-steps", "2",
            "--batch-size", "4", "--workers", "0", "--out", str(out), "method.num_prototypes=6",
            "method.proj_hidden_dim=32", "method.proj_dim=16", "method.image_size=64", "train.progress=false"]
    assert main(args) == 0
    return str(out / "checkpoints" / "step_00000002.pth")


def test_scores_are_mean_cosine_over_won_pixels(slotcon_ckpt):
    method = method_from_checkpoint(load_checkpoint(slotcon_ckpt))
    scores, images, used = prototype_scores(method, demo_images()[:4])
    assert scores.shape == (4, 6) and images.shape == (4, 3, 64, 64) and len(used) == 4
    from objssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    x = (images.float() / 255 - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    with torch.no_grad():
        feats = method.target["slotcon"]["projector"](method.target["backbone"](x).maps[method.map_name])
        dots = torch.einsum("kd,bdhw->bkhw", F.normalize(method.target["slotcon"]["grouping"].prototypes.weight, dim=1),
                            F.normalize(feats, dim=1))
    won = F.one_hot(dots.argmax(1), 6).permute(0, 3, 1, 2).bool()
    for n in range(4):
        for k in range(6):
            expected = dots[n, k][won[n, k]].mean() if won[n, k].any() else dots[n, k].mean()
            assert abs(scores[n, k].item() - expected.item()) < 1e-4
    used_counts = won.flatten(2).any(2).sum(0)
    top = most_used_prototypes(method, images, 2)
    assert used_counts[top[0]] == used_counts.max()


def test_cli_writes_a_grid(slotcon_ckpt, tmp_path, capsys):
    out = tmp_path / "slots.png"
    assert main(["viz", "slots", slotcon_ckpt, "--idxs", "0,3,5", "--topk", "2", "-o", str(out)]) == 0
    assert "prototypes [0, 3, 5]" in capsys.readouterr().out
    png = np.array(Image.open(out))
    assert png.shape == (2 * 64 + 3 * 4, 3 * 64 + 4 * 4, 3)  # rows x columns of 64-px tiles, 4-px padding
    assert main(["viz", "slots", slotcon_ckpt, "--idxs", "9", "-o", str(out)]) == 2
    assert "prototypes 0..5" in capsys.readouterr().err


def test_cli_refuses_checkpoints_without_prototypes(tmp_path, capsys, tiny_config, photo_folder):
    from objssl.engine import Trainer

    Trainer(tiny_config(tmp_path / "byol", photo_folder, max_steps=1)).fit()
    ckpt = tmp_path / "byol" / "checkpoints" / "step_00000001.pth"
    assert main(["viz", "slots", str(ckpt), "-o", str(tmp_path / "x.png")]) == 2
    assert "needs SlotCon's prototypes" in capsys.readouterr().err
