"""`make demo` installs the base package only, and the demo needs nothing more.

A newcomer's first command should not wait minutes for torch and every SDK: the demo runs
on SQLite with the in-process worker, so its install step is `pip install -e .`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


@pytest.mark.slow
def test_demo__runs_with_every_extra_unimportable(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(blocked=set(EXTRA_MODULES)))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")]),
        "SQLITE_PATH": str(tmp_path / "demo.sqlite3"),
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
    }
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    manage = [sys.executable, "manage.py"]
    blocked = subprocess.run(
        [sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True
    )
    assert "is not installed by `make demo`" in blocked.stderr  # the blocker is active
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=EXAMPLE, env=env, check=True)
    demo = subprocess.run(
        [*manage, "automate_demo"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    assert "Run #1: completed (outbox item done)" in demo.stdout
