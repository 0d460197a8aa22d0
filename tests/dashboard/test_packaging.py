"""The dashboard is optional: flowq does not import it, and without its extra it says
which extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

BLOCK_STARLETTE = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "starlette":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
"""


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )


def test_importing_flowq_does_not_import_the_dashboard() -> None:
    """``import flowq`` and the CLI module load no web library."""
    code = (
        "import sys, flowq, flowq.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('starlette', 'jinja2', 'uvicorn', 'flowq.dashboard') or m.startswith('flowq.dashboard')))"
    )
    assert _python(code).stdout.strip() == "[]"


def test_a_missing_extra_is_named() -> None:
    """Without starlette, importing flowq.dashboard names the extra to install."""
    result = _python(BLOCK_STARLETTE + "import flowq.dashboard")
    assert "flowq-durable[dashboard]" in result.stderr


def test_the_command_names_the_missing_extra(tmp_path: pytest.TempPathFactory) -> None:
    """``flowq dashboard`` without the extra: one line naming it, exit status 1."""
    code = BLOCK_STARLETTE + "from flowq.cli import main; sys.exit(main(sys.argv[1:]))"
    result = _python(code, "dashboard", "--database-url", f"sqlite+aiosqlite:///{tmp_path}/x.db")
    assert result.returncode == 1
    assert result.stderr.startswith("flowq: error:") and "[dashboard]" in result.stderr


def test_the_command_refuses_a_public_address_without_credentials(
    tmp_path: pytest.TempPathFactory,
) -> None:
    """``--host 0.0.0.0`` with no FLOWQ_DASHBOARD_* credentials does not start."""
    code = "import sys; from flowq.cli import main; sys.exit(main(sys.argv[1:]))"
    url = f"sqlite+aiosqlite:///{tmp_path}/x.db"
    result = _python(code, "dashboard", "--host", "0.0.0.0", "--database-url", url)  # noqa: S104
    assert result.returncode == 1 and "FLOWQ_DASHBOARD_TOKEN" in result.stderr
