"""The ```python blocks of every page in docs/ run, in order, as one script per page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALL_PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
FENCE = re.compile(r"^```(\S*)", re.MULTILINE)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
LANGUAGES = {"python", "sh", "text"}


def python_script(page: Path) -> str:
    """The page's ```python blocks, joined in order (fences of other kinds are checked)."""
    text = page.read_text(encoding="utf-8")
    openings = FENCE.findall(text)[::2]
    unknown = sorted({language or "(none)" for language in openings} - LANGUAGES)
    assert not unknown, f"{page.name}: fence the blocks as python, sh or text, not {unknown}"
    return "\n\n".join(PYTHON_BLOCK.findall(text))


PAGES = [page for page in ALL_PAGES if python_script(page)]


def test_pages_with_examples_are_found() -> None:
    """The pages that teach the API (and the README) carry runnable examples."""
    names = {page.name for page in PAGES}
    assert {"quickstart.md", "jobs.md", "testing.md", "README.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_docs_examples_run(page: Path, tmp_path: Path) -> None:
    """Running the page's python blocks as one script on a fresh SQLite file exits 0."""
    script_text = python_script(page)
    script = tmp_path / f"{page.stem}_examples.py"
    script.write_text(script_text, encoding="utf-8")
    env = {**os.environ, "FLOWQ_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/docs.db"}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # testing.md runs the whole store contract on SQLite
        check=False,
    )
    assert result.returncode == 0, (
        f"{page.name}: examples exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
