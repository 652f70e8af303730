"""``objssl export``: bad output paths, non-objssl input and a full disk are one-line errors."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from objssl.cli import main
from objssl.errors import UserError
from objssl.registry import EXPORTERS

import objssl  # noqa: F401 - registers the built-in exporters

# checkpoint helpers shared with the integration tests (one source, loaded by path)
_spec = importlib.util.spec_from_file_location(
    "_objssl_transfer_test_helpers", Path(__file__).resolve().parents[1] / "integrations" / "conftest.py")
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
write_checkpoint = _helpers.write_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ck") / "byol.pth", "test_resnet")


def _one_line_error(capsys, *args) -> str:
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("to", ["timm", "detectron2", "mmseg"])
def test_output_under_a_file(ckpt, tmp_path, capsys, to):
    (tmp_path / "afile").write_text("x")
    err = _one_line_error(capsys, ckpt, "--to", to, "-o", str(tmp_path / "afile" / "sub" / "out.pth"))
    assert "afile" in err and "is a file, not a folder" in err


@pytest.mark.parametrize("to", ["timm", "detectron2", "mmseg"])
def test_output_onto_a_folder(ckpt, tmp_path, capsys, to):
    (tmp_path / "out.pth").mkdir()
    err = _one_line_error(capsys, ckpt, "--to", to, "-o", str(tmp_path / "out.pth"))
    assert "is a folder" in err


@pytest.mark.parametrize("missing", ["model", "backbone"])
@pytest.mark.parametrize("to", ["timm", "detectron2", "mmseg"])
def test_checkpoint_without_model_or_backbone(tmp_path, capsys, to, missing):
    state = torch.load(write_checkpoint(tmp_path / "c.pth", "test_resnet"), weights_only=True)
    del state[missing]
    torch.save(state, tmp_path / "broken.pth")
    err = _one_line_error(capsys, str(tmp_path / "broken.pth"), "--to", to, "-o", str(tmp_path / "o.pth"))
    assert f"no '{missing}'" in err and "KeyError" not in err
    with pytest.raises(UserError, match=f"no '{missing}'"):
        EXPORTERS.get(to)(state, str(tmp_path / "o.pth"))


def test_a_timm_file_is_not_an_objssl_checkpoint(tmp_path, capsys):
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "timm.pth")
    err = _one_line_error(capsys, str(tmp_path / "timm.pth"), "--to", "timm", "-o", str(tmp_path / "o.pth"))
    assert "is not an objssl checkpoint" in err


@pytest.mark.parametrize("to, out", [("timm", "o.pth"), ("timm", "o.safetensors"), ("detectron2", "o.pkl"),
                                     ("detectron2", "o.pth"), ("mmseg", "o.pth")])
def test_full_disk_at_export_write(ckpt, tmp_path, capsys, monkeypatch, full_disk, to, out):
    full_disk(0)
    err = _one_line_error(capsys, ckpt, "--to", to, "-o", str(tmp_path / "exp" / out))
    monkeypatch.undo()
    assert "ENOSPC" in err and "No space left on device" in err and out in err
    assert os.listdir(tmp_path / "exp") == []  # neither the file nor a temp file
