"""The layer contracts of pyproject.toml ([tool.importlinter]), run as ``make lint`` runs them.

The real tree must pass. For the failures, src/, benchmarks/ and pyproject.toml are copied
to a temporary directory, each case adds one module with a forbidden import, and the lint
target's own ``lint-imports`` command line runs there once: it must fail, and each
case's module must be reported under the contract it breaks.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.fixture(autouse=True)
def _lint_imports_installed() -> None:
    # A missing tool fails in CI (AUTOMATE_REQUIRE_SERVICES=1) instead of skipping.
    if not LINT_IMPORTS.exists():
        service_missing(f"lint-imports is not installed next to {sys.executable} (dev extra)")


def _lint_command() -> str:
    """The ``lint-imports`` line of the Makefile's ``lint`` target, for this venv."""
    target = re.search(r"^lint:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert target, "the Makefile has no lint target"
    (line,) = [cmd.strip() for cmd in target.group(1).splitlines() if "lint-imports" in cmd]
    return line.replace("$(VENV)/bin/lint-imports", str(LINT_IMPORTS))


def _run(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _lint_command(), shell=True, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_layers__the_real_tree_keeps_every_contract():
    result = _run(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


CASES = [
    ("automate_core", "import automate.models\n", "automate_core imports no other app"),
    (
        "automate_core.providers",
        # Imports inside functions count as much as those at the top.
        "def later():\n    from rag import filters\n",
        "automate_core imports no other app",
    ),
    ("automate_connectors", "import automate\n", "automate_connectors imports only automate_core"),
    ("automate_llm", "from rag import filters\n", "automate_llm imports only automate_core"),
    ("automate_llm", "import automate_connectors\n", "automate_llm imports only automate_core"),
    (
        "rag.contrib.pgvector",
        "import automate_llm.registry\n",
        "automate_llm and rag are independent of each other",
    ),
    ("rag", "import automate.models\n", "rag imports only automate_core"),
    ("automate", "import automate_testing\n", "automate never imports automate_testing"),
    ("automate.steps", "from benchmarks import common\n", "automate never imports"),
    (
        "automate.mcp",
        "from automate_core._netguard import check_url\n",
        "nothing outside automate_core imports automate_core._*",
    ),
    (
        "rag",
        "from automate_core import _httpbody\n",
        "nothing outside automate_core imports automate_core._*",
    ),
]


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every case's module added to one copy of the tree, linted once: contract -> report."""
    copy = tmp_path_factory.mktemp("layers")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "templates", "static")
    for folder in ("src", "benchmarks"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    for index, (package, source, _contract) in enumerate(CASES):
        (copy / "src" / package.replace(".", "/") / f"_violation_{index}.py").write_text(source)
    result = _run(copy)
    assert result.returncode != 0, result.stdout + result.stderr
    report = result.stdout.split("Broken contracts", 1)[1]
    # Each broken contract is reported as its name, a row of dashes, then the imports.
    sections = re.split(r"\n(?=[^\n]+\n-{3,}\n)", report)
    return {section.split("\n", 1)[0]: section for section in sections[1:]}


@pytest.mark.parametrize(
    ("index", "package", "contract"),
    [(i, package, contract) for i, (package, _source, contract) in enumerate(CASES)],
)
def test_layers__a_violating_import_fails_make_lint(broken, index, package, contract):
    (name,) = [name for name in broken if name.startswith(contract)]
    assert f"{package}._violation_{index} ->" in broken[name], broken[name]
