"""The optional-extras rule of tests/conftest.py: skips for a missing extra, and, with
OBJSSL_REQUIRE_EXTRAS=1, failures instead of skips (GPU skips excepted)."""

from pathlib import Path

import pytest
import torch  # noqa: F401 - imported before the inline pytest runs, which must not re-import it (C extension)

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).parent / "conftest.py").read_text()
# an extra that is never installed, to exercise the marker and the fixture
FAKE_EXTRA = '\nEXTRAS["nosuch"] = Extra(("objssl_no_such_module_xyz",), "pip install nosuch")\n'

TESTS = '''
import pytest

def test_passes():
    pass

def test_skip_call():
    pytest.skip("detectron2 is not installed: bash transfer/install.sh d2")

@pytest.mark.skipif(True, reason="mmsegmentation is not installed")
def test_skipif():
    pass

def test_importorskip():
    pytest.importorskip("objssl_no_such_module_xyz")

@pytest.mark.nosuch
def test_marker():
    pass

def test_fixture(require_extra):
    require_extra("nosuch")

@pytest.mark.gpu
def test_gpu_marker():
    pytest.skip("no device here")

@pytest.mark.skipif(True, reason="needs a CUDA device")
def test_gpu_reason():
    pass

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False
'''

MODULE_SKIP = '''
import pytest
pytest.importorskip("objssl_no_such_module_xyz")

def test_never_collected():
    pass
'''


@pytest.fixture
def project(pytester):
    pytester.makeconftest(CONFTEST + FAKE_EXTRA)
    pytester.makepyfile(test_extras=TESTS, test_module_skip=MODULE_SKIP)
    return pytester


def outcomes(project, *args):
    """``{test name: outcome}`` of an inline run; a setup failure reads "error", xfail "xfailed"."""
    rec = project.inline_run("-p", "no:cacheprovider", *args)
    got = {}
    for rep in rec.getreports("pytest_runtest_logreport"):
        name = rep.nodeid.split("::")[-1]
        if hasattr(rep, "wasxfail"):
            got[name] = "xfailed"
        elif rep.failed:
            got[name] = "error" if rep.when == "setup" else "failed"
        elif rep.skipped or name not in got:
            got[name] = rep.outcome
    return got


def test_missing_extras_skip_by_default(project, monkeypatch):
    monkeypatch.delenv("OBJSSL_REQUIRE_EXTRAS", raising=False)
    result = project.runpytest("-rA", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=8, xfailed=1)
    # the marker and the fixture name the extra and how to install it
    result.stdout.fnmatch_lines(["*needs the optional extra 'nosuch' (objssl_no_such_module_xyz not installed): "
                                 "pip install nosuch*"])


def test_required_extras_turn_skips_into_failures(project, monkeypatch):
    monkeypatch.setenv("OBJSSL_REQUIRE_EXTRAS", "1")
    result = project.runpytest("-rA", "-p", "no:cacheprovider", "--continue-on-collection-errors")
    # skips raised in the test body fail; skipif markers / marker skips fail at setup (errors);
    # the module-level importorskip fails its collection; GPU skips and xfail are untouched
    result.assert_outcomes(passed=1, failed=3, errors=3, skipped=2, xfailed=1)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*OBJSSL_REQUIRE_EXTRAS=1: skipping is not allowed*skip reason: "
                                 "detectron2 is not installed*"])
    result.stdout.fnmatch_lines(["*ERROR collecting test_module_skip.py*", "*skip reason:*could not import*"])
    assert outcomes(project, "--continue-on-collection-errors") == {
        "test_passes": "passed",
        "test_skip_call": "failed", "test_importorskip": "failed", "test_fixture": "failed",
        "test_skipif": "error", "test_marker": "error",
        "test_gpu_marker": "skipped", "test_gpu_reason": "skipped",
        "test_xfail": "xfailed",
    }


def test_other_values_of_the_variable_keep_skips(project, monkeypatch):
    monkeypatch.setenv("OBJSSL_REQUIRE_EXTRAS", "0")
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1, skipped=8, xfailed=1)


def test_installed_extras_do_not_skip(pytester, monkeypatch):
    """A marker of an installed extra runs the test (here: every extra this environment has)."""
    import importlib.util

    monkeypatch.setenv("OBJSSL_REQUIRE_EXTRAS", "1")
    pytester.makeconftest(CONFTEST + '\nEXTRAS["here"] = Extra(("pytest",), "pip install pytest")\n')
    pytester.makepyfile("import pytest\n\n@pytest.mark.here\ndef test_runs():\n    pass\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert importlib.util.find_spec("pytest") is not None
