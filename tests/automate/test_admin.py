"""Admin: workflows edited through WorkflowService; runs as a redacted timeline; replay."""

from __future__ import annotations

import json

import pytest

from automate.models import RunStatus, Workflow, WorkflowRun
from automate.services import WorkflowService
from automate_core import redaction

pytestmark = pytest.mark.django_db

STEPS = [
    {
        "name": "Echo",
        "type": "connector_action",
        "config": {
            "profile": "recorder",
            "action": "echo",
            "input": {"t": "{{ event.payload.t }}"},
        },
    }
]


def form_data(**overrides):
    data = {
        "name": "From admin",
        "key": "",
        "description": "",
        "enabled": "on",
        "trigger_connector": "my_service",
        "trigger_event_types": '["order.*"]',
        "steps": json.dumps(STEPS),
    }
    data.update(overrides)
    return data


def test_admin__add_workflow_goes_through_the_service(admin_client):
    response = admin_client.post("/admin/automate/workflow/add/", form_data())
    assert response.status_code == 302
    wf = Workflow.objects.get()
    assert (wf.key, wf.version, wf.trigger_event_types) == ("from-admin", 1, ["order.*"])
    assert [s.name for s in wf.current_steps()] == ["Echo"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"steps": json.dumps([{"name": "X", "type": "nope"}])}, "unknown step type"),
        ({"steps": "[]"}, "This field is required"),
        ({"trigger_event_types": "[1]"}, "trigger.events"),
        (
            {
                "steps": json.dumps(
                    [{"name": "X", "type": "filter", "config": {"condition": "{{ ''.__class__ }}"}}]
                )
            },
            "__class__",
        ),
    ],
)
def test_admin__invalid_workflow_shows_the_error_and_saves_nothing(
    admin_client, overrides, message
):
    response = admin_client.post("/admin/automate/workflow/add/", form_data(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Workflow.objects.exists()


def test_admin__changing_steps_makes_a_new_version(admin_client):
    wf = WorkflowService().create_workflow(name="W", steps=STEPS)
    page = admin_client.get(f"/admin/automate/workflow/{wf.pk}/change/")
    assert "{{ event.payload.t }}" in page.content.decode()
    new_steps = [*STEPS, {"name": "F", "type": "filter", "config": {"condition": True}}]
    response = admin_client.post(
        f"/admin/automate/workflow/{wf.pk}/change/",
        form_data(name="W", key="w", steps=json.dumps(new_steps), trigger_connector=""),
    )
    assert response.status_code == 302
    wf.refresh_from_db()
    assert wf.version == 2
    assert wf.trigger_connector == ""
    assert [s.name for s in wf.current_steps()] == ["Echo", "F"]


def test_admin__run_timeline_filters_and_replay(admin_client, drain):
    redaction.remember("tok_very_secret_1")
    wf = WorkflowService().create_workflow(
        name="W",
        steps=[
            *STEPS,
            {
                "name": "Fail",
                "type": "connector_action",
                "config": {"profile": "recorder", "action": "fail", "input": {"code": "not_found"}},
            },
        ],
    )
    run = WorkflowService().run_workflow(wf, {"t": "tok_very_secret_1"})
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    page = admin_client.get(f"/admin/automate/workflowrun/{run.pk}/change/").content.decode()
    assert "automate-timeline" in page
    assert "Echo" in page
    assert "Fail" in page
    assert " ms<" in page or " s<" in page  # durations
    assert "tok_very_secret_1" not in page
    assert "[redacted]" in page
    listing = admin_client.get("/admin/automate/workflowrun/", {"status__exact": "dead"})
    assert f"/admin/automate/workflowrun/{run.pk}/change/" in listing.content.decode()
    listing = admin_client.get("/admin/automate/workflowrun/", {"status__exact": "completed"})
    assert f"/admin/automate/workflowrun/{run.pk}/change/" not in listing.content.decode()
    found = admin_client.get("/admin/automate/workflowrun/", {"q": run.trace_id})
    assert f"/admin/automate/workflowrun/{run.pk}/change/" in found.content.decode()
    admin_client.post(
        "/admin/automate/workflowrun/",
        {"action": "replay_runs", "_selected_action": [run.pk]},
    )
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING
    assert WorkflowRun.objects.get().outbox_item.status == "pending"
