"""A logged-in API user, with some model permissions or none.

Finding 3: any logged-in user read every run (event payloads, step inputs and outputs)
and every workflow. Reading now needs ``automate.view_workflowrun`` / ``view_workflow``,
the schema follows the API's permissions, and ``AUTOMATE["API_OBJECT_FILTER"]`` narrows
the rows a request may see.

Finding 9: an event posted to ``/api/events/`` with the id of a future delivery made the
genuine signed webhook a "duplicate", and the fake payload stayed. API events now live
under their own source (``api:<connection>``).

Finding 14: a 100k-deep JSON body was a 500 (the parser's RecursionError).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings

from automate.models import Workflow, WorkflowRun
from automate.services import WorkflowService
from automate.worker import EmbeddedWorker
from automate_core.models import OutboxItem

pytestmark = pytest.mark.django_db

STEPS = [{"name": "Pass", "type": "filter", "config": {"condition": True}}]
WEBHOOK_SECRET = "settings-secret-value"  # my_service's secret in tests/settings.py


def _client(username: str, *codenames: str) -> Client:
    user = User.objects.create_user(username, password="pw")
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    token = base64.b64encode(f"{username}:pw".encode()).decode()
    return Client(HTTP_AUTHORIZATION=f"Basic {token}")


@pytest.fixture
def run() -> WorkflowRun:
    workflow = WorkflowService().create_workflow(name="Payroll", steps=STEPS)
    return WorkflowService().run_workflow(workflow, {"payload": {"salary": 123456}})


# -- Finding 3: reading needs the view permission -------------------------------------


def test_api_user__without_permissions_reads_no_run_and_no_workflow(run):
    client = _client("nobody")
    for url in (
        "/api/runs/",
        f"/api/runs/{run.pk}/",
        "/api/workflows/",
        f"/api/workflows/{run.workflow.key}/",
    ):
        response = client.get(url)
        assert response.status_code == 403, url
        assert b"123456" not in response.content


def test_api_user__view_workflowrun_reads_runs_and_nothing_else(run):
    client = _client("auditor", "view_workflowrun")
    assert client.get("/api/runs/").json()["results"][0]["id"] == run.pk
    detail = client.get(f"/api/runs/{run.pk}/")
    assert detail.status_code == 200
    assert detail.json()["event"]["payload"] == {"salary": 123456}
    assert client.get("/api/workflows/").status_code == 403
    # Reading is not starting: a replay needs add_workflowrun as well.
    assert client.post(f"/api/runs/{run.pk}/replay/").status_code == 403


def test_api_user__view_workflow_reads_workflows_but_not_runs(run):
    client = _client("designer", "view_workflow")
    assert client.get("/api/workflows/").json()["results"][0]["key"] == run.workflow.key
    assert client.get(f"/api/workflows/{run.workflow.key}/").status_code == 200
    assert client.get("/api/runs/").status_code == 403
    assert client.get(f"/api/runs/{run.pk}/").status_code == 403


def test_api_user__change_workflow_implies_reading_it_as_in_the_admin(run):
    client = _client("editor", "change_workflow")
    assert client.get(f"/api/workflows/{run.workflow.key}/").status_code == 200


def test_api_user__add_workflowrun_alone_cannot_replay_or_read_runs(run):
    client = _client("starter", "add_workflowrun")
    assert client.post(f"/api/runs/{run.pk}/replay/").status_code == 403
    assert client.get(f"/api/runs/{run.pk}/").status_code == 403


def test_api_user__schema_follows_the_apis_permissions(run):
    assert Client().get("/api/schema/").status_code in (401, 403)
    assert _client("nobody").get("/api/schema/").status_code == 403
    assert _client("auditor", "view_workflowrun").get("/api/schema/").status_code == 200


@override_settings(
    SPECTACULAR_SETTINGS={"SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"]}
)
def test_api_user__a_project_may_publish_the_schema_explicitly():
    from drf_spectacular.settings import spectacular_settings

    spectacular_settings.reload()
    try:
        assert Client().get("/api/schema/").status_code == 200
    finally:
        spectacular_settings.reload()


def only_team_a(request, queryset):
    """A multi-tenant rule: the users of team A see team A's workflows and their runs."""
    if queryset.model is WorkflowRun:
        return queryset.filter(workflow__key__startswith="team-a-")
    return queryset.filter(key__startswith="team-a-")


@override_settings(AUTOMATE={"API_OBJECT_FILTER": f"{__name__}.only_team_a"})
def test_api_user__object_filter_hides_other_tenants_rows_everywhere():
    service = WorkflowService()
    mine = service.run_workflow(service.create_workflow(name="Team A sync", steps=STEPS))
    theirs = service.run_workflow(service.create_workflow(name="Team B sync", steps=STEPS))
    client = _client(
        "a-user",
        "view_workflowrun",
        "view_workflow",
        "add_workflowrun",
        "change_workflow",
        "delete_workflow",
    )
    assert [r["id"] for r in client.get("/api/runs/").json()["results"]] == [mine.pk]
    assert [w["key"] for w in client.get("/api/workflows/").json()["results"]] == ["team-a-sync"]
    assert client.get(f"/api/runs/{theirs.pk}/").status_code == 404
    assert client.post(f"/api/runs/{theirs.pk}/replay/").status_code == 404
    for method in ("get", "patch", "delete"):
        response = getattr(client, method)(
            "/api/workflows/team-b-sync/", {}, content_type="application/json"
        )
        assert response.status_code == 404, method
    assert (
        client.post(
            "/api/workflows/team-b-sync/run/", {}, content_type="application/json"
        ).status_code
        == 404
    )
    assert Workflow.objects.filter(key="team-b-sync").exists()


# -- Finding 9: an API event cannot pre-empt a webhook ----------------------------------


def test_api_user__cannot_make_a_genuine_webhook_a_duplicate(csrf_client):
    api = _client("integrator", "add_workflowrun")
    fake = {
        "connector": "my_service",
        "type": "charge",
        "id": "evt_future_1",
        "payload": {"id": "evt_future_1", "amount": 1},
    }
    assert api.post("/api/events/", fake, content_type="application/json").status_code == 202

    body = json.dumps({"id": "evt_future_1", "type": "charge", "amount": 999}).encode()
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    genuine = csrf_client.post(
        "/webhooks/my_service/",
        data=body,
        content_type="application/json",
        HTTP_X_SIGNATURE=signature,
    )
    assert genuine.status_code == 202, genuine.content
    assert "duplicate" not in genuine.json()
    stored = OutboxItem.objects.get(pk=genuine.json()["id"])
    assert stored.payload == {"id": "evt_future_1", "type": "charge", "amount": 999}


def test_api_user__api_events_keep_their_own_dedupe_and_start_the_connections_workflows():
    workflow = WorkflowService().create_workflow(
        name="On charge", steps=STEPS, trigger="my_service"
    )
    api = _client("integrator", "add_workflowrun")
    event = {"connector": "my_service", "type": "charge", "id": "e-1", "payload": {"n": 1}}
    first = api.post("/api/events/", event, content_type="application/json")
    again = api.post("/api/events/", event, content_type="application/json")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["duplicate"] is True
    EmbeddedWorker(threads=1, poll_seconds=0).run(once=True)
    run = WorkflowRun.objects.get(workflow=workflow)
    assert run.event["connector"] == "my_service"
    assert run.event["source"] == "api"  # a workflow can tell it from a signed delivery


def test_api_user__the_api_source_is_not_a_webhook_url(csrf_client):
    body = b'{"id": "x"}'
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = csrf_client.post(
        "/webhooks/api:my_service/",
        data=body,
        content_type="application/json",
        HTTP_X_SIGNATURE=signature,
    )
    assert response.status_code == 404
    assert not OutboxItem.objects.exists()


# -- Finding 14: deeply nested JSON is a 400 ----------------------------------------------


@pytest.mark.parametrize("depth", [100_000, 101])
@pytest.mark.parametrize("url", ["/api/events/", "/api/workflows/"])
def test_api_user__deeply_nested_json_is_400_not_500(url, depth):
    client = _client("root-ish", "add_workflowrun", "add_workflow")
    nested = "[" * depth + "]" * depth
    body = '{"connector": "my_service", "name": "n", "steps": [], "payload": ' + nested + "}"
    response = client.post(url, body, content_type="application/json")
    assert response.status_code == 400
    assert "nested more than 100 levels" in response.json()["detail"]
    assert not OutboxItem.objects.exists()


def test_api_user__json_nested_up_to_the_cap_is_accepted():
    client = _client("integrator", "add_workflowrun")
    nested = "[" * 99 + "]" * 99  # 100 levels with the body's own object
    body = '{"connector": "my_service", "payload": ' + nested + "}"
    assert client.post("/api/events/", body, content_type="application/json").status_code == 202


def test_api_user__a_connection_key_too_long_for_the_api_source_is_400_not_500():
    long_key = "k" * 97  # "api:" + 97 characters overflows the 100-character column
    api = _client("integrator", "add_workflowrun")
    with override_settings(AUTOMATE={"CONNECTORS": {long_key: {"connector": "my_service"}}}):
        response = api.post(
            "/api/events/", {"connector": long_key}, content_type="application/json"
        )
    assert response.status_code == 400
    assert "up to 96 characters" in response.json()["connector"][0]
    assert not OutboxItem.objects.exists()
