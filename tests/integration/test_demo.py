"""`make demo` runs these two commands on the example project: prove they work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_demo_install import block_extras

EXAMPLE = Path(__file__).resolve().parents[2] / "example"


@pytest.mark.slow
def test_demo__webhook_to_a_workflow_with_a_branch_and_a_delay_in_embedded_mode(tmp_path):
    # `make demo` installs the base package only: the demo must run with every extra
    # unimportable.
    blocker = block_extras(tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([blocker, str(EXAMPLE.parent / "src")]),
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
    assert "answer: 202" in out
    assert "connector_key  github" in out
    assert "event_type     issues" in out
    assert "the same request with a tampered body: 401" in out
    # The two-step workflow ran: the Jira action reached the local target, the filter passed.
    assert "Run #1: completed (outbox item done)" in out
    assert "Create Jira issue [succeeded, attempt 1]" in out
    assert '"key": "DEMO-1"' in out
    assert "Only opened issues [succeeded, attempt 1]" in out
    assert 'POST /rest/api/3/issue {"fields": {"project": {"key": "DEMO"}' in out
    # The branch took the bug side, whose delay parked the run (waiting), then resumed it.
    assert "Labelled bug? [succeeded, attempt 1]" in out
    assert '"took": "then"' in out
    assert "the branch 'Labelled bug?' took: then" in out
    assert "run #1: waiting (parked on its delay until " in out
    assert "the worker resumed the run: completed" in out
    assert "Wait a moment [succeeded, attempt 1]" in out
    assert '"waited": true' in out
    waited = re.search(r"the delay 'Wait a moment' parked the run for ([0-9.]+) s", out)
    assert waited is not None
    assert float(waited.group(1)) >= 0.9  # a delay of 1 s (rounded to a tenth)
    assert "/admin/automate/workflowrun/1/change/" in out

    # Running the demo again updates the workflow in place and runs a new delivery.
    again = subprocess.run(
        [*manage, "automate_demo"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "Run #2: completed" in again.stdout
