"""`make demo` runs these two commands on the example project: prove they work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "example"


@pytest.mark.slow
def test_demo__accepts_and_stores_a_signed_webhook_and_refuses_a_tampered_one(tmp_path):
    env = {
        **os.environ,
        "SQLITE_PATH": str(tmp_path / "demo.sqlite3"),
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
    }
    env.pop("DATABASE_URL", None)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=EXAMPLE, env=env, check=True)
    result = subprocess.run(
        [*manage, "automate_demo"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Answer: 202" in out
    assert "connector_key  github" in out
    assert "event_type     issues" in out
    assert "Same request with a tampered body: 401" in out
