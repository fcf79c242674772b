"""The admin flow in a real browser: log in, add an MCP server, sync, see its tools.

Headless Chromium from Debian (``apt-get install chromium``) driven by Playwright's Python
package with ``executable_path`` (``playwright install`` is never needed), against
pytest-django's ``live_server`` and the real MCP test server.
"""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import service_missing
from tests.mcp.conftest import TOKEN

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("loopback_allowed")]


@pytest.fixture
def browser():
    if shutil.which(CHROMIUM) is None:
        service_missing(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_missing("the playwright package is missing (pip install playwright)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def superuser(transactional_db):
    from django.contrib.auth.models import User

    return User.objects.create_superuser("admin", "admin@example.com", "browser-pw")


def test_admin_browser__add_server_sync_and_see_tools(superuser, live_server, mcp_server, browser):
    calls_before = len(mcp_server.calls())
    page = browser.new_page()
    page.set_default_timeout(20_000)

    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "browser-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")

    page.goto(f"{live_server.url}/admin/automate/mcpserver/add/")
    page.fill("#id_name", "My Tools")
    page.fill("#id_url", mcp_server.url)
    page.fill("#id_new_api_key", TOKEN)
    page.click("input[name=_continue]")
    page.wait_for_selector("#mcp-sync-button")
    assert "was added successfully" in page.inner_text(".messagelist")
    assert TOKEN not in page.content()  # the key is never shown back

    page.click("#mcp-sync-button")
    page.wait_for_selector(".messagelist .success")
    assert "synced 6 tools" in page.inner_text(".messagelist")
    inline = page.inner_text("#tools-group")
    for name in ("search_documents", "echo", "explode", "add", "slow", "big"):
        assert name in inline

    # The list shows the server as synced with its six tools. (No ORM here: Playwright's
    # sync API keeps an event loop on this thread, where Django refuses database calls.)
    page.goto(f"{live_server.url}/admin/automate/mcpserver/")
    row = page.inner_text("#result_list tbody tr")
    assert "my_tools" in row and "\t6\t" in row and "ok" in row
    page.close()
    assert len(mcp_server.calls()) == calls_before  # listing tools calls none


@pytest.fixture
def view_only_staff(transactional_db, mcp_server):
    """A staff user who may only look at MCP servers, and one server to look at."""
    from django.contrib.auth.models import Permission, User

    from automate.models import MCPServer

    user = User.objects.create_user("auditor", password="browser-pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_mcpserver"))
    return MCPServer.objects.create(name="Audited", url=mcp_server.url, api_key=TOKEN)


def test_admin_browser__view_only_staff_get_no_sync(view_only_staff, live_server, browser):
    # tests/security/test_view_only_staff.py checks the refusals; this checks what a
    # view-only user is shown: no "Sync tools" button, no "Sync tools" action.
    page = browser.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "auditor")
    page.fill("#id_password", "browser-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")

    page.goto(f"{live_server.url}/admin/automate/mcpserver/{view_only_staff.pk}/change/")
    page.wait_for_selector("#content")
    assert page.query_selector("#mcp-sync-button") is None
    page.goto(f"{live_server.url}/admin/automate/mcpserver/")
    page.wait_for_selector("#result_list")
    options = page.eval_on_selector_all(
        "select[name=action] option", "options => options.map(o => o.value)"
    )
    assert "sync_tools_action" not in options
    page.close()
