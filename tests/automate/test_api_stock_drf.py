"""The REST API mounted in a fresh project with stock DRF settings (no REST_FRAMEWORK,
no drf_spectacular app), with and without ``rest_framework`` in INSTALLED_APPS.

DRF and drf-spectacular read their settings into class attributes at import, so the
project runs in a subprocess: tests/stock_drf/in_stock_project.py under its settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "settings_module", ["tests.stock_drf.settings", "tests.stock_drf.settings_bare"]
)
def test_api__works_in_a_project_with_stock_drf_settings(settings_module):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module}
    test_file = "tests/stock_drf/in_stock_project.py"
    command = [sys.executable, "-m", "pytest", test_file, "--ds", settings_module, "-q"]
    result = subprocess.run(
        [*command, "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "6 passed" in result.stdout, result.stdout[-3000:]
