"""Proposal-cache faults: dead workers, sources workers cannot rebuild, corrupt files, missing images."""

import os
import shlex
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from PIL import Image

from objssl.cli import main
from objssl.errors import DataError
from objssl.images.sources import list_images
from objssl.proposals import (
    ProposalCache,
    ProposalCacheError,
    RandomSource,
    SourceNotImportableError,
    build_cache,
    check_coverage,
    missing_images,
    open_proposals,
)
from objssl.proposals import cache_builder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """8 real photos, widths 120, 140, ..., 260 px (so a source can pick one by its width)."""
    from skimage import data

    root = tmp_path_factory.mktemp("fault_photos")
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for i in range(8):
        sub = root / ("a" if i < 4 else "b")
        sub.mkdir(exist_ok=True)
        Image.fromarray(photos[i % 4]).resize((120 + 20 * i, 90 + 10 * i)).save(sub / f"p{i}.jpg", quality=92)
    return root


@pytest.fixture(scope="module")
def paths(folder):
    return list_images(str(folder))


CRASHY = textwrap.dedent('''
    """A proposal source that kills its own process on the image of one width (an OOM kill, a native crash)."""
    import os
    import signal

    from objssl.proposals import RandomSource


    class KillOnWidth(RandomSource):
        name = "kill_on_width"

        def __init__(self, kill_width=None, n=5):
            super().__init__(n=n)
            self.kill_width = kill_width

        def params(self):
            return {"n": self.n}  # the same cache key with and without the crash

        def propose(self, image):
            if image.shape[1] == self.kill_width:
                os.kill(os.getpid(), signal.SIGKILL)
            return super().propose(image)
''')


def _same_boxes(a_dir, b_dir, paths):
    a, b = ProposalCache(str(a_dir)), ProposalCache(str(b_dir))
    return all(torch.equal(a.boxes_for(p), b.boxes_for(p)) for p in paths)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_dead_worker_fails_only_its_shard_and_a_rerun_completes_it(tmp_path, paths, monkeypatch):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "crashy_source.py").write_text(CRASHY)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))  # spawned workers get this sys.path
    from crashy_source import KillOnWidth

    out = tmp_path / "c"
    start = time.monotonic()
    with pytest.raises(ProposalCacheError) as info:  # multiprocessing.Pool used to hang here forever
        build_cache(KillOnWidth(kill_width=220), paths, str(out), workers=2, shard_size=2, progress=False)
    assert time.monotonic() - start < 300
    message = str(info.value)
    assert "\n" not in message
    assert "shard-00002 (killed by SIGKILL)" in message and "p5.jpg" not in message.split("first")[0]
    assert "3 of 4 shards are finished" in message and "rerun `objssl proposals`" in message
    assert not (out / "meta.json").exists()
    assert {f"shard-{s:05d}.json" for s in (0, 1, 3)} <= set(os.listdir(out))
    assert not (out / "shard-00002.json").exists()
    summary = build_cache(KillOnWidth(), paths, str(out), workers=2, shard_size=2, progress=False)
    assert summary.shards_reused == 3 and summary.computed == 2
    build_cache(KillOnWidth(), paths, str(tmp_path / "clean"), shard_size=2, progress=False)
    assert _same_boxes(out, tmp_path / "clean", paths)


@pytest.mark.timeout(300)
def test_d_a_source_workers_cannot_rebuild_ends_the_build_in_one_line(tmp_path, paths):
    # defined in `python -c` code: the parent can pickle it, a spawned worker cannot find it
    code = textwrap.dedent(f'''
        import sys
        from objssl.proposals import ProposalSource, Proposals, build_cache
        from objssl.registry import PROPOSALS

        @PROPOSALS.register("script_boxes")
        class ScriptBoxes(ProposalSource):
            name = "script_boxes"
            version = "1"
            def propose(self, image):
                return Proposals([[0.0, 0.0, 4.0, 4.0]])

        try:
            build_cache(ScriptBoxes(), {list(paths)!r}, {str(tmp_path / "c")!r}, workers=2, progress=False)
        except Exception as exc:
            print(type(exc).__name__ + ": " + str(exc))
            sys.exit(3)
    ''')
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert time.monotonic() - start < 240
    assert out.returncode == 3, out.stderr[-2000:]
    line = out.stdout.strip()
    assert "\n" not in line and "Traceback" not in out.stderr
    assert line.startswith("SourceNotImportableError: worker processes cannot rebuild proposal source 'script_boxes'")
    assert "--import MODULE" in line and "plugin" in line and "--workers 1" in line


def test_d_an_unpicklable_source_is_refused_before_any_worker_starts(tmp_path, paths):
    class Local(RandomSource):  # a class inside a function cannot be pickled
        name = "local"

    with pytest.raises(SourceNotImportableError, match="'local' cannot be sent to worker processes"):
        build_cache(Local(n=3), paths, str(tmp_path / "c"), workers=2, progress=False)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_d_cli_import_registers_a_source_in_the_parent_and_the_workers(tmp_path, folder):
    (tmp_path / "my_sources.py").write_text(textwrap.dedent('''
        import torch
        from objssl.proposals import Proposals, ProposalSource
        from objssl.registry import PROPOSALS

        @PROPOSALS.register("corner_boxes")
        class CornerBoxes(ProposalSource):
            name = "corner_boxes"
            version = "1"
            def __init__(self, size=8.0):
                self.size = float(size)
            def propose(self, image):
                return Proposals(torch.tensor([[0.0, 0.0, self.size, self.size]]))
    '''))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    base = [sys.executable, "-m", "objssl.cli", "proposals", "--source", "corner_boxes", "--data", str(folder),
            "--out", str(tmp_path / "c"), "--no-progress"]
    out = subprocess.run(base, capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "unknown proposal source 'corner_boxes'" in out.stderr
    out = subprocess.run(base + ["--import", "my_sources", "--workers", "2", "--param", "size=5"],
                         capture_output=True, text=True, env=env, timeout=240)
    assert out.returncode == 0, out.stderr
    cache = ProposalCache(str(tmp_path / "c"))
    assert len(cache) == 8 and cache.boxes(3).tolist() == [[0, 0, 5, 5]]
    assert cache.rebuild_command().startswith("objssl proposals --source corner_boxes --import my_sources --param size=5 ")
    out = subprocess.run(base + ["--import", "no_such_module_xyz"], capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "--import no_such_module_xyz: ModuleNotFoundError" in out.stderr


def _flip_two_bytes(path):
    raw = bytearray(path.read_bytes())
    i = len(raw) // 2
    raw[i] ^= 0x55
    raw[i + 1] ^= 0x55
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("name, damage, recomputed", [
    ("shard-00001.json", "cut", 3),  # a manifest cut to 40 bytes
    ("shard-00001.json", "flip", 3),
    ("shard-00001.npy", "flip", 3),
    ("index.npy", "flip", 0),  # 2 flipped bytes used to give an image 0 boxes, silently
    ("sizes.npy", "flip", 0),
    ("images.txt", "flip", 0),
    ("meta.json", "cut", 0),
    ("meta.json", "flip", 0),
])
def test_b_every_cache_file_is_checked_named_and_recomputed_by_a_rerun(tmp_path, paths, name, damage, recomputed):
    src, out = RandomSource(n=10), tmp_path / "c"
    build_cache(src, paths, str(out), shard_size=3, progress=False)
    target = out / name
    if damage == "cut":
        target.write_bytes(target.read_bytes()[:40])
    else:
        _flip_two_bytes(target)
    with pytest.raises(ProposalCacheError) as info:
        ProposalCache(str(out))
    message = str(info.value)
    assert "\n" not in message and str(target) in message and "corrupt" in message
    assert "run `objssl proposals` again with the same arguments" in message
    summary = build_cache(src, paths, str(out), shard_size=3, progress=False)
    assert summary.computed == recomputed and summary.shards_reused == 3 - (recomputed > 0)
    build_cache(src, paths, str(tmp_path / "clean"), shard_size=3, progress=False)
    assert _same_boxes(out, tmp_path / "clean", paths)


def test_b_a_torn_build_record_is_rewritten_and_shards_still_checked(tmp_path, paths):
    src, out = RandomSource(n=10), tmp_path / "c"
    build_cache(src, paths, str(out), shard_size=3, progress=False)
    (out / "build.json").write_text('{"cache_k')
    summary = build_cache(src, paths, str(out), shard_size=3, progress=False)
    assert summary.shards_reused == 3 and summary.computed == 0
    with pytest.raises(ProposalCacheError, match="different cache_key"):
        build_cache(RandomSource(n=11), paths, str(out), shard_size=3, progress=False)


def test_c_missing_images_one_line_with_the_command_that_adds_them(tmp_path, folder, paths):
    out = tmp_path / "c"
    assert main(["proposals", "--source", "random", "--param", "n=7", "--data", str(folder / "a"),
                 "--out", str(out), "--shard-size", "2", "--no-progress"]) == 0
    cache = open_proposals(str(out))
    assert missing_images(cache, paths) == paths[4:]
    with pytest.raises(DataError) as info:
        check_coverage(cache, paths, data=str(folder))
    message = str(info.value)
    assert "\n" not in message
    assert f"has no boxes for 4 of the 8 images ({paths[4]}, {paths[5]}, {paths[6]}, ...)" in message
    command = message.split("add them with: ", 1)[1]
    assert "--source random" in command and "--param n=7" in command and f"--out {out}" in command
    # the command given really adds them: a rerun on the superset computes only the new images
    args = shlex.split(command)
    assert args[:2] == ["objssl", "proposals"]
    assert main(args[1:] + ["--no-progress"]) == 0
    cache = open_proposals(str(out))
    check_coverage(cache, paths)
    assert len(cache) == 8
    build_cache(RandomSource(n=7), paths, str(tmp_path / "clean"), shard_size=2, progress=False)
    assert _same_boxes(out, tmp_path / "clean", paths)


def test_c_a_rerun_on_a_superset_reuses_the_full_shards(tmp_path, paths):
    out = str(tmp_path / "c")
    build_cache(RandomSource(n=4), paths[:5], out, shard_size=2, progress=False)
    summary = build_cache(RandomSource(n=4), paths, out, shard_size=2, progress=False)
    # shards [0, 1] and [2, 3] are kept; the partly filled [4] is redone with the 3 new images
    assert summary.images_added == 3 and summary.shards_reused == 2 and summary.computed == 4
    assert "3 added" in str(summary)
    with pytest.raises(ProposalCacheError, match="different images_sha256: 2 of its 8 images are not in this list"):
        build_cache(RandomSource(n=4), paths[2:], out, shard_size=2, progress=False)


def test_c_coverage_of_100k_images_reads_only_the_index(tmp_path, monkeypatch):
    root, out = os.path.realpath(tmp_path), str(tmp_path / "big")
    keys = [f"img/{i // 1000:03d}/{i:06d}.jpg" for i in range(100_000)]
    settings = {"cache_key": "x", "max_side": None, "fallback": "random", "shard_size": 1000}
    box = (np.array([[1, 2, 30, 40]], np.int16), 0, 50, 60, None)
    os.makedirs(out)
    ranges = [(s, s + 1000) for s in range(0, 100_000, 1000)]
    for s, (lo, hi) in enumerate(ranges):
        cache_builder._write_shard(out, s, [box] * 1000, keys[lo:hi], keys[lo:hi], settings)
    cache_builder._finalize(out, RandomSource(n=1), keys, root, ranges, cache_builder.CacheSummary(),
                            {**settings, "root": root})
    wanted = [os.path.join(root, k) for k in keys] + [os.path.join(root, "new", f"{i}.jpg") for i in range(10)]
    start = time.perf_counter()
    cache = open_proposals(out)  # checksums of every file included
    monkeypatch.setattr(ProposalCache, "_shard", lambda self, i: pytest.fail("a coverage check read boxes"))
    with pytest.raises(DataError, match="has no boxes for 10 of the 100010 images"):
        check_coverage(cache, wanted)
    elapsed = time.perf_counter() - start
    assert elapsed < 20, f"{elapsed:.1f} s"  # about 1-2 s on one free core
