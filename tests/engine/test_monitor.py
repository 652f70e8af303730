"""train.eval_every: the kNN monitor logs top-1/top-5, and changes nothing about the training."""

import json
import os
import sys

import pytest
import torch

from objssl.config import apply_overrides, validate_config
from objssl.engine import Trainer
from objssl.errors import ConfigError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "evaluation"))
from conftest import make_image_folder  # noqa: E402 - the evaluation tests' labelled demo crops


@pytest.fixture(scope="module")
def knn_folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("knn")
    return make_image_folder(base / "train", per_class=4), make_image_folder(base / "val", per_class=2, offset=30)


def _records(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _monitored(cfg, folders, every=2):
    train, val = folders
    return apply_overrides(cfg, [f"train.eval_every={every}", f"eval.knn.train={train}", f"eval.knn.val={val}",
                                 "eval.knn.k=3", "eval.knn.image_size=32", "eval.knn.batch_size=8"])


def test_eval_every_logs_knn_and_leaves_training_and_resume_exact(tmp_path, photo_folder, tiny_config, knn_folders):
    plain = Trainer(tiny_config(tmp_path / "plain", photo_folder, max_steps=4, ckpt_every=100))
    plain.fit()
    cfg = _monitored(tiny_config(tmp_path / "mon", photo_folder, max_steps=4, ckpt_every=100), knn_folders)
    first = Trainer(cfg)
    first.fit(stop_after_steps=3)
    del first
    second = Trainer(cfg, resume=True)
    assert second.step == 3
    second.fit()

    rows = _records(tmp_path / "mon")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    evals = {r["step"]: (r["eval/knn_top1"], r["eval/knn_top5"]) for r in rows if "eval/knn_top1" in r}
    assert sorted(evals) == [2, 4]
    for top1, top5 in evals.values():
        assert 0 <= top1 <= top5 <= 100
        # 6 val images: a percentage is a multiple of 100/6
        assert (top1 * 6 / 100) == pytest.approx(round(top1 * 6 / 100), abs=1e-4)
    log = (tmp_path / "mon" / "log.txt").read_text()
    assert "step 2: kNN eval" in log and "step 4: kNN eval" in log and "top-1" in log
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "mon" / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("eval/knn_top1")] == [2, 4]

    # the eval draws nothing the training draws from: same losses, same weights as without it
    assert [r["loss"] for r in rows] == [r["loss"] for r in _records(tmp_path / "plain")]
    a, b = plain.method.state_dict(), second.method.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_bad_eval_config_fails_before_training(tmp_path, photo_folder, tiny_config, knn_folders):
    cfg = tiny_config(tmp_path / "run", photo_folder)
    with pytest.raises(ConfigError, match="eval.knn.train"):
        validate_config(apply_overrides(cfg, ["train.eval_every=2"]))
    with pytest.raises(ConfigError, match="eval.knn.val.*not a folder"):
        validate_config(apply_overrides(_monitored(cfg, knn_folders), [f"eval.knn.val={tmp_path / 'missing'}"]))
    with pytest.raises(ConfigError, match="fewer than eval.knn.k=50"):
        validate_config(apply_overrides(_monitored(cfg, knn_folders), ["eval.knn.k=50"]))
    with pytest.raises(ConfigError, match="train.eval_every"):
        validate_config(apply_overrides(cfg, ["train.eval_every=0"]))
    with pytest.raises(ConfigError, match="eval.knn.temperature"):
        validate_config(apply_overrides(cfg, ["eval.knn.temperature=-1"]))
    with pytest.raises(ConfigError, match="eval.knn.val"):
        Trainer(_monitored(cfg, (knn_folders[0], str(tmp_path))))  # no class folders: fails in __init__
    assert not os.path.exists(tmp_path / "run" / "checkpoints")
