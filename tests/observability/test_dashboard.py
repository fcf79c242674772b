"""The admin's "Automate overview": its data, its permission, its SVG, its links."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from automate import dashboard
from automate.models import WebhookRefusalMinute
from tests.automate.test_webhook_view import post
from tests.observability.conftest import drain, notify_workflow, send_event

pytestmark = pytest.mark.django_db(transaction=True)


def test_dashboard__collect_counts_events_runs_failures_and_401s(target, loopback, csrf_client):
    notify_workflow(target.url("/hook"))
    for n in range(3):
        send_event(csrf_client, event_id=f"evt_{n}")
    post(csrf_client, b'{"id": "x"}', signature="bad")
    post(csrf_client, b'{"id": "y"}', signature="bad")
    assert drain() == {"done": 3}
    data = dashboard.collect("hour")
    assert sum(data["received"]) == 3
    assert sum(data["finished"]) == 3
    assert sum(data["dead"]) == 0 and sum(data["failed"]) == 0
    assert len(data["received"]) == 60
    assert data["lag_overall"][2] == 3
    [slowest] = data["slowest"]
    assert (slowest["step__name"], slowest["n"]) == ("Notify", 3)
    assert data["refusals"] == [{"connector_key": "my_service", "n": 2}]
    assert WebhookRefusalMinute.objects.get().count == 2
    day = dashboard.collect("day")
    assert len(day["received"]) == 96 and sum(day["received"]) == 3


def test_dashboard__old_rows_are_outside_the_window(db):
    from automate_core.models import OutboxItem

    OutboxItem.objects.create(
        connector_key="a", trace_id="t", created_at=timezone.now() - timedelta(hours=2)
    )
    assert sum(dashboard.collect("hour")["received"]) == 0
    assert sum(dashboard.collect("day")["received"]) == 1


def test_dashboard__a_chart_links_to_every_row_of_its_window(client, db):
    """The day window always spans two dates: its link lists the rows of both."""
    from automate_core.models import OutboxItem

    OutboxItem.objects.create(connector_key="a", trace_id="t")
    OutboxItem.objects.create(
        connector_key="b", trace_id="t", created_at=timezone.now() - timedelta(hours=23)
    )
    OutboxItem.objects.create(
        connector_key="c", trace_id="t", created_at=timezone.now() - timedelta(hours=25)
    )
    client.force_login(User.objects.create_superuser("root", password="pw"))
    page = client.get("/admin/automate/overview/?window=day")
    [chart] = [c for c in page.context["charts"] if c["id"] == "events"]
    listed = client.get(chart["link"])
    assert listed.status_code == 200  # not the admin's redirect to ?e=1 for a bad filter
    assert listed.context["cl"].result_count == 2


def test_dashboard__svg_escapes_labels():
    svg = dashboard.svg_bars([("<b>", [1, 2], "#000")], ["<x>", "y"], "t&t")
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "t&amp;t" in svg
    assert svg.count('class="bar"') == 2


def _staff(*perms: str) -> User:
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def test_dashboard__page_needs_the_view_permission_on_runs(client):
    client.force_login(_staff())
    assert client.get("/admin/automate/overview/").status_code == 403
    index = client.get("/admin/")
    assert b"Automate overview" not in index.content


def test_dashboard__page_renders_charts_and_links(client, target, loopback, csrf_client):
    notify_workflow(target.url("/hook"))
    send_event(csrf_client)
    drain()
    client.force_login(_staff("view_workflowrun"))
    assert b"Automate overview" in client.get("/admin/").content
    page = client.get("/admin/automate/overview/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("automate-chart") == 4
    assert 'class="bar"' in html
    assert "/admin/automate/workflowrun/?status__exact=completed&amp;created_at__gte=" in html
    assert "/admin/automate_core/outboxitem/?created_at__gte=" in html
    assert "Notify" in html  # slowest steps
    assert client.get("/admin/automate/overview/?window=day").status_code == 200
