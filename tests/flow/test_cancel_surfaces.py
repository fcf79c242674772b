"""``cancel_run`` in the API (``POST /api/runs/{id}/cancel/``) and as an admin action,
both behind ``automate.change_workflowrun``; ``on_failure`` through the API."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from automate.models import RunStatus
from tests.automate.test_api import basic
from tests.flow.helpers import action, start

pytestmark = pytest.mark.django_db

DELAY = {"name": "Wait", "type": "delay", "config": {"seconds": 600}}


@pytest.fixture
def admin_api() -> Client:
    User.objects.create_superuser("root", "root@example.com", "pw")
    return Client(**basic("root"))


def test_api__cancel_a_waiting_run(admin_api, drain):
    run = start([DELAY, action("After")])
    drain()
    response = admin_api.post(f"/api/runs/{run.pk}/cancel/")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "cancelled"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    again = admin_api.post(f"/api/runs/{run.pk}/cancel/")
    assert again.status_code == 409
    assert "cancelled" in again.json()["error"]


def test_api__cancel_needs_the_change_permission(drain):
    run = start([DELAY])
    drain()
    user = User.objects.create_user("plain", password="pw")
    client = Client(**basic("plain"))
    assert client.post(f"/api/runs/{run.pk}/cancel/").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="change_workflowrun"))
    assert client.post(f"/api/runs/{run.pk}/cancel/").status_code == 202


def test_api__workflow_with_on_failure_round_trips(admin_api):
    body = {
        "name": "Guarded",
        "steps": [action("A")],
        "on_failure": [action("Alert", input_data={"s": "{{ failure.step }}"})],
    }
    response = admin_api.post("/api/workflows/", body, content_type="application/json")
    assert response.status_code == 201, response.content
    assert [s["name"] for s in response.json()["on_failure"]] == ["Alert"]
    # New steps without on_failure keep the current on_failure steps.
    patched = admin_api.patch(
        "/api/workflows/guarded/", {"steps": [action("B")]}, content_type="application/json"
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["version"] == 2
    assert [s["name"] for s in patched.json()["on_failure"]] == ["Alert"]


def test_admin__cancel_action_needs_the_permission(drain, client):
    run = start([DELAY])
    drain()
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_workflowrun"))
    client.force_login(staff)
    listing = client.get("/admin/automate/workflowrun/").content.decode()
    assert "cancel_runs" not in listing
    staff.user_permissions.add(Permission.objects.get(codename="change_workflowrun"))
    listing = client.get("/admin/automate/workflowrun/").content.decode()
    assert "cancel_runs" in listing
    response = client.post(
        "/admin/automate/workflowrun/",
        {"action": "cancel_runs", "_selected_action": [run.pk]},
        follow=True,
    )
    assert "Cancelled 1 run(s)." in response.content.decode()
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
