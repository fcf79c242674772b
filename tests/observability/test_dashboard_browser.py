"""The overview in a real browser (Debian's chromium through Playwright), over real runs;
the screenshot is saved as a test artifact (``AUTOMATE_TEST_ARTIFACTS``, else the test's
tmp dir), and copied to docs/img/ with ``AUTOMATE_UPDATE_SCREENSHOTS=1``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.automate.test_webhook_view import post
from tests.mcp.test_admin_browser import browser, superuser  # noqa: F401
from tests.observability.conftest import drain, notify_workflow, send_event

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "img" / "admin-overview.png"


@pytest.fixture
def real_runs(target, loopback, csrf_client):
    """Runs made before the browser starts (Playwright's loop forbids queries here)."""
    notify_workflow(target.url("/hook"))
    notify_workflow(target.url("/fail"), key="failing", max_attempts=1)
    for n in range(12):
        send_event(csrf_client, event_id=f"evt_{n}")
    for _ in range(3):
        post(csrf_client, b'{"id": "x"}', signature="bad")
    return drain()


def test_dashboard_browser__charts_render_from_real_runs(
    superuser,  # noqa: F811
    real_runs,
    live_server,
    browser,  # noqa: F811
    tmp_path,
):
    assert real_runs == {"dead": 12}  # each event: one run completes, one is dead-lettered

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "browser-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    page.click("text=Automate overview")
    page.wait_for_selector("#chart-events svg")
    assert page.locator("svg.automate-chart").count() == 4
    assert page.locator("#chart-events rect.bar").count() >= 1
    assert page.locator("#chart-failures rect.bar").count() >= 1
    assert page.locator("#chart-lag polyline").count() == 2
    assert "my_service" in page.inner_text("#refusals")
    assert "Notify" in page.inner_text("#slowest-steps")
    box = page.locator("#chart-events svg").bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 40

    # The artifact: AUTOMATE_TEST_ARTIFACTS (CI) or the test's tmp dir; the docs' copy is
    # refreshed only on request (AUTOMATE_UPDATE_SCREENSHOTS=1), so a test run leaves the
    # work tree clean.
    artifacts = Path(os.environ.get("AUTOMATE_TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "admin-overview.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("AUTOMATE_UPDATE_SCREENSHOTS"):
        SCREENSHOT.write_bytes(shot.read_bytes())

    # Each chart links to its filtered changelist.
    page.click("#chart-events h2 a")
    page.wait_for_selector("#result_list")
    assert "created_at__gte" in page.url and "?e=1" not in page.url
    assert page.locator("#result_list tbody tr").count() == 12
    page.go_back()
    page.click("#chart-failures h2 a")
    page.wait_for_selector("#result_list")
    assert "status__exact=dead" in page.url and "?e=1" not in page.url
    assert page.locator("#result_list tbody tr").count() == 12
