"""The package keeps its layer order: `lint-imports` (import-linter, the contract in pyproject.toml)
finds no import running upward, lazy (function-level) imports included."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def test_lint_imports_keeps_the_layer_contract():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "lint-imports not found: import-linter is in the dev extra (pip install -e '.[dev]')"
    # the checked package is this checkout's, not another installed copy
    where = subprocess.run([sys.executable, "-c", "import objssl; print(objssl.__file__)"], cwd=ROOT, env=_env(),
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).resolve().is_relative_to(ROOT / "objssl"), where
    out = subprocess.run([exe, "--no-cache"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    report = out.stdout + out.stderr
    assert "objssl layers" in report, report  # the contract of pyproject.toml was read
    assert out.returncode == 0, report
