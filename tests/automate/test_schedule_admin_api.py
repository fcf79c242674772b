"""Schedule triggers in the admin and the REST API, through WorkflowService."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from automate.models import Schedule, Workflow
from automate.services import WorkflowService
from tests.automate.test_admin import STEPS, form_data
from tests.automate.test_api import admin_api  # noqa: F401

pytestmark = pytest.mark.django_db


def test_admin__add_a_scheduled_workflow(admin_client):
    schedule = {"schedule": "0 9 * * 1-5", "timezone": "Europe/Paris"}
    response = admin_client.post(
        "/admin/automate/workflow/add/",
        form_data(
            trigger_connector="", trigger_event_types="[]", trigger_schedule=json.dumps(schedule)
        ),
    )
    assert response.status_code == 302
    wf = Workflow.objects.get()
    assert wf.trigger_connector == ""
    assert Schedule.objects.get(workflow=wf).spec().as_trigger() == {
        **schedule,
        "catch_up": "latest",
    }
    listing = admin_client.get("/admin/automate/workflow/").content.decode()
    assert "0 9 * * 1-5 (Europe/Paris)" in listing


def test_admin__editing_keeps_the_schedule_and_its_next_tick(admin_client):
    wf = WorkflowService().create_workflow(name="W", steps=STEPS, trigger={"every": 3600})
    later = datetime(2030, 1, 1, tzinfo=UTC)
    Schedule.objects.update(next_tick_at=later)
    page = admin_client.get(f"/admin/automate/workflow/{wf.pk}/change/").content.decode()
    assert "&quot;every&quot;: 3600" in page
    response = admin_client.post(
        f"/admin/automate/workflow/{wf.pk}/change/",
        form_data(
            name="Renamed",
            key="w",
            trigger_connector="",
            trigger_event_types="[]",
            trigger_schedule=json.dumps({"every": 3600, "catch_up": "latest"}),
        ),
    )
    assert response.status_code == 302
    assert Schedule.objects.get().next_tick_at == later  # the same schedule: same next tick
    # Emptying the schedule and naming a connector replaces it.
    admin_client.post(
        f"/admin/automate/workflow/{wf.pk}/change/",
        form_data(name="Renamed", key="w", trigger_schedule=""),
    )
    assert not Schedule.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"trigger_schedule": '{"every": 0}', "trigger_connector": ""},
            "trigger.every must be a whole number",
        ),
        ({"trigger_schedule": '{"every": 5}'}, "not both"),
        ({"trigger_schedule": '["every"]', "trigger_connector": ""}, "must be a JSON object"),
        (
            {
                "trigger_schedule": '{"schedule": "0 9 * * *", "timezone": "Nowhere"}',
                "trigger_connector": "",
            },
            "is not a known time zone",
        ),
    ],
)
def test_admin__a_bad_schedule_is_a_form_error(admin_client, overrides, message):
    response = admin_client.post("/admin/automate/workflow/add/", form_data(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Workflow.objects.exists()


def test_api__create_show_and_replace_a_schedule(admin_api):  # noqa: F811
    body = {
        "name": "Nightly",
        "steps": STEPS,
        "trigger": {"schedule": "0 2 * * *", "timezone": "Europe/Paris", "catch_up": "none"},
    }
    create = admin_api.post("/api/workflows/", body, content_type="application/json")
    assert create.status_code == 201, create.content
    assert create.json()["trigger"] == body["trigger"]
    assert Schedule.objects.get().catch_up == "none"
    patch = admin_api.patch(
        "/api/workflows/nightly/", {"trigger": {"every": 30}}, content_type="application/json"
    )
    assert patch.json()["trigger"] == {"every": 30, "catch_up": "latest"}
    assert admin_api.get("/api/workflows/nightly/").json()["trigger"]["every"] == 30
    patch = admin_api.patch(
        "/api/workflows/nightly/",
        {"trigger": {"connector": "my_service"}},
        content_type="application/json",
    )
    assert patch.json()["trigger"] == {"connector": "my_service", "events": []}
    assert not Schedule.objects.exists()


@pytest.mark.parametrize(
    ("trigger", "fragment"),
    [
        ({"every": 0}, "whole number of seconds"),
        ({"schedule": "nope"}, "5-field cron"),
        ({"schedule": "0 9 * * *", "timezone": "Nowhere"}, "not a known time zone"),
        ({"events": ["x"]}, "connection key"),
    ],
)
def test_api__a_bad_schedule_is_400(admin_api, trigger, fragment):  # noqa: F811
    response = admin_api.post(
        "/api/workflows/",
        {"name": "X", "steps": STEPS, "trigger": trigger},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert fragment in str(response.json()["trigger"])
    assert not Workflow.objects.exists()


def test_admin__disable_and_enable_actions_pause_and_restart_the_schedule(admin_client):
    wf = WorkflowService().create_workflow(name="W", steps=STEPS, trigger={"every": 60})
    url = "/admin/automate/workflow/"
    admin_client.post(url, {"action": "disable_workflows", "_selected_action": [wf.pk]})
    wf.refresh_from_db()
    assert wf.enabled is False
    assert Schedule.objects.get().next_tick_at is None
    admin_client.post(url, {"action": "enable_workflows", "_selected_action": [wf.pk]})
    wf.refresh_from_db()
    assert wf.enabled is True
    assert Schedule.objects.get().next_tick_at is not None
