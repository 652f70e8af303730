"""The code in docs/plugins.md works as the page says."""

import re
from pathlib import Path

from objssl.testing import check_objective

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def _python_block_after(heading: str) -> str:
    text = DOC.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_objective_term_of_the_page_passes_check_objective():
    namespace: dict = {}
    exec(compile(_python_block_after("## Objective terms and methods: write"), str(DOC), "exec"), namespace)
    logged = check_objective(namespace["PooledBYOL"], dim=16)
    assert set(logged) == {"loss"}
