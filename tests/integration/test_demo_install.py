"""`make demo` installs the base package only (test_demo.py runs the demo with the extras
blocked by :func:`block_extras`).

A newcomer's first command should not wait minutes for torch and every SDK: the demo runs
on SQLite with the in-process worker, so its install step is `pip install -e .`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example"

# The top-level modules that only the extras bring (postgres, redis, openai, anthropic,
# pinecone, cohere, local, mcp) and what the test tools bring.
EXTRA_MODULES = [
    "psycopg",
    "pgvector",
    "redis",
    "openai",
    "tiktoken",
    "anthropic",
    "pinecone",
    "cohere",
    "sentence_transformers",
    "torch",
    "mcp",
    "pytest",
    "hypothesis",
]

BLOCKER = """
import importlib.abc, sys

BLOCKED = {blocked!r}


class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed by `make demo` (an extra)")
        return None


sys.meta_path.insert(0, _Blocked())
"""


def test_make_demo__installs_the_base_package_without_extras_or_torch(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("GNU make is not on the path; `make demo` cannot be checked")
    venv = tmp_path / "venv"
    result = subprocess.run(
        ["make", "-n", "demo", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    installs = [line for line in result.stdout.splitlines() if "pip install" in line]
    assert installs, result.stdout
    assert not any("torch" in line for line in installs), installs
    package = [line for line in installs if " -e " in line]
    assert package and all(line.rstrip().endswith("-e .") for line in package), installs


def block_extras(directory) -> str:
    """A ``sitecustomize`` in ``directory`` that makes every extra unimportable; returns the
    directory for ``PYTHONPATH``."""
    (directory / "sitecustomize.py").write_text(BLOCKER.format(blocked=set(EXTRA_MODULES)))
    return str(directory)
