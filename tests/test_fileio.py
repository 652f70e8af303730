"""atomic_write: permissions follow the umask; leftovers of a killed writer are cleaned up."""

import os
import stat
import time

import pytest

from objssl.fileio import TEMP_PREFIX, atomic_write, current_umask, remove_stale_temp_files


@pytest.fixture
def umask():
    def set_mask(mask):
        old = os.umask(mask)
        restore.append(old)

    restore = []
    yield set_mask
    for old in reversed(restore):
        os.umask(old)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_write_honours_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    assert current_umask() == mask
    path = tmp_path / "shared" / "cache.bin"
    atomic_write(str(path), lambda f: f.write(b"data"))
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(os.stat(path).st_mode) == expected


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write(str(path), lambda f: f.write("one"), mode="w")
    atomic_write(str(path), lambda f: f.write("two"), mode="w")
    assert path.read_text() == "two"

    def fail(f):
        f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(str(path), fail, mode="w")
    assert path.read_text() == "two"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_stale_temp_files_are_removed_but_young_ones_kept(tmp_path):
    start = time.time()
    old = tmp_path / f"{TEMP_PREFIX}abc123"
    old.write_bytes(b"x" * 1000)
    os.utime(old, (start - 60, start - 60))
    young = tmp_path / f"{TEMP_PREFIX}def456"  # a writer still at work
    young.write_bytes(b"y" * 10)
    os.utime(young, (start + 1, start + 1))
    keep = tmp_path / "step_00000001.pth"
    keep.write_bytes(b"z")
    os.utime(keep, (start - 60, start - 60))
    assert remove_stale_temp_files(str(tmp_path), older_than=start) == (1, 1000)
    assert sorted(os.listdir(tmp_path)) == sorted([young.name, keep.name])
    assert remove_stale_temp_files(str(tmp_path / "missing"), older_than=start) == (0, 0)
