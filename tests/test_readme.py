"""The README's Python example runs as written, and its first lines are the two commands."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README should show a Python example"
    exec(compile(blocks[0], "README.md", "exec"), {})


def test_readme_opens_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1).strip().splitlines()
    assert first_block == [
        "bash scripts/setup.sh && .venv/bin/aki quickstart",
        "bash scripts/setup.sh --test && .venv/bin/python -m pytest -q",
    ]
    ci = (README.parent / ".ci" / "run").read_text()
    assert first_block[1] in ci
