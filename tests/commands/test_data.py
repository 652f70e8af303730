"""``objssl data shard`` and training on its shards: counted skips of bad members, exact resume."""

import glob
import json
import os

import torch

from objssl.cli import main
from objssl.config import apply_overrides
from objssl.engine import Trainer
from objssl.images.sources import list_images


def _photos_with_bad_images(tmp_path, photo_folder):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted(photo_folder.iterdir()):
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")  # the bad-image corpus
    (folder / "empty.png").write_bytes(b"")
    good = (folder / "img_05.jpg").read_bytes()
    (folder / "img_05b.jpg").write_bytes(good[: len(good) // 2])
    return folder


def _metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_shard_a_coco_json_in_its_order(tmp_path, photo_folder, capsys):
    names = ["img_07.jpg", "img_01.jpg", "img_04.jpg"]
    coco = tmp_path / "ann" / "instances.json"
    coco.parent.mkdir()
    coco.write_text(json.dumps({"images": [{"id": i, "file_name": n} for i, n in enumerate(names)]}))
    out = tmp_path / "shards"
    assert main(["data", "shard", str(coco), "--images-root", str(photo_folder), "--out", str(out),
                 "--shard-size", "2", "--prefix", "val"]) == 0
    assert "3 images in 2 shards" in capsys.readouterr().out
    assert (out / "val.txt").read_text() == "val-000000.tar\nval-000001.tar\n"
    assert (out / "val-sources.tsv").read_text().splitlines() == [
        f"val-00000{i // 2}.tar/{i:08d}\t{n}" for i, n in enumerate(names)]
    members = list_images(str(out / "val.txt"))
    for name, src in zip(members, names):
        key = name.rsplit("/", 1)[1]
        assert (photo_folder / src).read_bytes() == _member_bytes(name.rsplit("/", 1)[0], key)
    assert main(["data", "shard", str(coco), "--images-root", str(photo_folder), "--out", str(out),
                 "--prefix", "val"]) == 2  # never overwrites
    assert "already holds shards val-" in capsys.readouterr().err


def _member_bytes(shard, key):
    from objssl.images.tar_shards import read_member

    return read_member(shard, key)


def test_training_on_shards_skips_bad_members_and_resumes_exactly(tmp_path, photo_folder, tiny_config):
    """BYOL on shards of the photos + the bad-image corpus: skips counted; 6 steps == 3 + resume 3."""
    folder = _photos_with_bad_images(tmp_path, photo_folder)
    assert main(["data", "shard", str(folder), "--out", str(tmp_path / "shards"), "--shard-size", "4"]) == 0
    data = str(tmp_path / "shards" / "train.txt")
    full = Trainer(tiny_config(tmp_path / "full", data, max_steps=6, ckpt_every=100, batch_size=5))
    summary = full.fit()
    assert summary["images_skipped"] > 0 and summary["step"] == 6
    cfg = apply_overrides(tiny_config(tmp_path / "split", data, max_steps=6, ckpt_every=100, batch_size=5),
                          ["data.num_workers=2"])
    first = Trainer(cfg)
    first.fit(stop_after_steps=3)
    assert [os.path.basename(p) for p in glob.glob(str(tmp_path / "split" / "checkpoints" / "*.pth"))] == [
        "step_00000003.pth"]
    del first
    second = Trainer(cfg, resume=True)
    assert second.step == 3
    resumed = second.fit()
    assert resumed["step"] == 6
    rows_full, rows_split = _metrics(tmp_path / "full"), _metrics(tmp_path / "split")
    assert [r["loss"] for r in rows_full] == [r["loss"] for r in rows_split]
    assert [r["images_skipped"] for r in rows_full] == [r["images_skipped"] for r in rows_split]
    a, b = full.method.state_dict(), second.method.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
