"""automate runs without its optional parts: a project that leaves ``automate_llm`` and
``rag`` out of INSTALLED_APPS and has no mcp SDK never imports them.

The imports of those parts are the ones ``# optional app:`` and ``# optional extra:`` keep
inside functions (tests/architecture/test_function_imports.py); this checks they stay lazy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROJECT = """
import json, sys
sys.modules["mcp"] = None  # what an absent package looks like to an import
import django
django.setup()
# The engine, its entry points and its checks, as a running project loads them.
import automate.api.views, automate.checks, automate.services, automate.views, automate.worker
from django.core import checks
from automate.steps import step_types

checks.run_checks()
loaded = sorted(
    name for name in sys.modules
    if name.split(".")[0] in {"automate_llm", "rag"}
    or name in {"automate.mcp.client", "automate.mcp.calls", "automate.mcp.transport"}
)
print(json.dumps({"steps": step_types(), "loaded": loaded}))
"""


def test_optional_apps__a_project_without_them_never_imports_them():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    # tests/stock_drf: automate_core, automate_connectors and automate, nothing optional.
    env["DJANGO_SETTINGS_MODULE"] = "tests.stock_drf.settings"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    result = subprocess.run(
        [sys.executable, "-c", PROJECT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    assert sorted(report["steps"]) == [
        "branch", "connector_action", "delay", "filter", "for_each", "http_request",
        "mcp_tool", "send_webhook", "wait_for_event", "workflow",
    ]  # fmt: skip
