"""The REST API: auth, events, workflows CRUD, runs, replay."""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from automate.models import RunStatus, Workflow, WorkflowRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem

pytestmark = pytest.mark.django_db

ECHO = {
    "name": "Echo",
    "type": "connector_action",
    "config": {"profile": "recorder", "action": "echo", "input": {"q": "{{ event.payload.q }}"}},
}


def basic(username: str, password: str = "pw") -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


@pytest.fixture
def admin_api() -> Client:
    User.objects.create_superuser("root", "root@example.com", "pw")
    return Client(**basic("root"))


@pytest.fixture
def plain_user() -> User:
    return User.objects.create_user("plain", password="pw")


def test_api__anonymous_and_wrong_password_are_refused():
    User.objects.create_superuser("root", "root@example.com", "pw")
    for client in (Client(), Client(**basic("root", "wrong"))):
        for method, url in [
            ("get", "/api/workflows/"),
            ("post", "/api/workflows/"),
            ("post", "/api/events/"),
            ("get", "/api/runs/"),
        ]:
            response = getattr(client, method)(url, {}, content_type="application/json")
            assert response.status_code in (401, 403), (method, url)
    assert not OutboxItem.objects.exists()


def test_api__authenticated_without_permission_is_403(plain_user):
    client = Client(**basic("plain"))
    # Reading needs the view permission of the model (tests/security/test_api_user.py).
    assert client.get("/api/workflows/").status_code == 403
    assert client.post("/api/workflows/", {}, content_type="application/json").status_code == 403
    event = {"connector": "my_service", "payload": {}}
    assert client.post("/api/events/", event, content_type="application/json").status_code == 403
    plain_user.user_permissions.add(Permission.objects.get(codename="add_workflowrun"))
    client = Client(**basic("plain"))
    assert client.post("/api/events/", event, content_type="application/json").status_code == 202


def test_api__post_event_queues_like_a_webhook(admin_api, drain, recorder_calls):
    WorkflowService().create_workflow(name="On event", steps=[ECHO], trigger="my_service")
    body = {"connector": "my_service", "type": "search", "id": "e-1", "payload": {"q": "hi"}}
    response = admin_api.post("/api/events/", body, content_type="application/json")
    assert response.status_code == 202
    item = OutboxItem.objects.get()
    assert response.json() == {"id": item.pk, "trace_id": item.trace_id}
    # Stored under its own source: it starts my_service's workflows, but its id never
    # meets a webhook's (tests/security/test_api_user.py).
    assert (item.connector_key, item.event_type, item.external_id) == (
        "api:my_service",
        "search",
        "e-1",
    )
    again = admin_api.post("/api/events/", body, content_type="application/json")
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    drain()
    assert recorder_calls == [("echo", {"q": "hi"})]


def test_api__event_for_an_unknown_connection_is_400(admin_api):
    response = admin_api.post(
        "/api/events/", {"connector": "nope", "payload": {}}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "no enabled connection named 'nope'" in response.json()["connector"][0]
    assert not OutboxItem.objects.exists()


def test_api__workflow_crud_and_versions(admin_api):
    create = admin_api.post(
        "/api/workflows/",
        {"name": "Via API", "steps": [ECHO], "trigger": {"connector": "my_service"}},
        content_type="application/json",
    )
    assert create.status_code == 201, create.content
    data = create.json()
    assert data["key"] == "via-api"
    assert data["version"] == 1
    assert data["trigger"] == {"connector": "my_service", "events": []}
    assert data["steps"][0]["retry"]["max_attempts"] == 3
    assert admin_api.get("/api/workflows/").json()["results"][0]["key"] == "via-api"
    patch = admin_api.patch(
        "/api/workflows/via-api/",
        {"steps": [ECHO, {"name": "F", "type": "filter", "config": {"condition": True}}]},
        content_type="application/json",
    )
    assert patch.status_code == 200
    assert patch.json()["version"] == 2
    assert [s["name"] for s in patch.json()["steps"]] == ["Echo", "F"]
    off = admin_api.patch(
        "/api/workflows/via-api/",
        {"enabled": False, "trigger": None},
        content_type="application/json",
    )
    assert off.json()["enabled"] is False
    assert off.json()["trigger"] is None
    assert admin_api.delete("/api/workflows/via-api/").status_code == 204
    assert not Workflow.objects.exists()
    assert admin_api.get("/api/workflows/via-api/").status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"name": "X", "steps": [{"name": "S", "type": "nope"}]}, "steps", "unknown step type"),
        ({"name": "X", "steps": []}, "steps", ""),
        ({"name": "X"}, "steps", ""),
        (
            {
                "name": "X",
                "steps": [
                    {"name": "S", "type": "filter", "config": {"condition": "{{ ''.__class__ }}"}}
                ],
            },
            "steps",
            "__class__",
        ),
        (
            {"name": "X", "steps": [ECHO], "trigger": {"connector": "_manual"}},
            "trigger",
            "connection key",
        ),
    ],
)
def test_api__invalid_workflow_is_400_naming_the_field(admin_api, body, field, fragment):
    response = admin_api.post("/api/workflows/", body, content_type="application/json")
    assert response.status_code == 400
    assert fragment in str(response.json()[field])
    assert not Workflow.objects.exists()


def test_api__duplicate_key_is_400(admin_api):
    WorkflowService().create_workflow(name="Same", steps=[ECHO])
    response = admin_api.post(
        "/api/workflows/", {"name": "Same", "steps": [ECHO]}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "already exists" in str(response.json())


def test_api__run_list_detail_filters_and_replay(admin_api, drain):
    wf = WorkflowService().create_workflow(
        name="Runs",
        steps=[
            ECHO,
            {
                "name": "Fail",
                "type": "connector_action",
                "config": {"profile": "recorder", "action": "fail", "input": {"code": "not_found"}},
            },
        ],
    )
    started = admin_api.post(
        f"/api/workflows/{wf.key}/run/", {"payload": {"q": "x"}}, content_type="application/json"
    )
    assert started.status_code == 202
    run_id = started.json()["id"]
    assert started.json()["status"] == "pending"
    conflict = admin_api.post(f"/api/runs/{run_id}/replay/")
    assert conflict.status_code == 409
    drain()
    dead = admin_api.get("/api/runs/", {"status": "dead"}).json()
    assert [r["id"] for r in dead["results"]] == [run_id]
    assert admin_api.get("/api/runs/", {"status": "completed"}).json()["results"] == []
    trace_id = dead["results"][0]["trace_id"]
    assert admin_api.get("/api/runs/", {"trace_id": trace_id}).json()["count"] == 1
    detail = admin_api.get(f"/api/runs/{run_id}/").json()
    assert [(s["step"], s["status"]) for s in detail["steps"]] == [
        ("Echo", "succeeded"),
        ("Fail", "failed"),
    ]
    assert detail["steps"][0]["output"] == {"echo": {"q": "x"}}
    replay = admin_api.post(f"/api/runs/{run_id}/replay/")
    assert replay.status_code == 202
    assert replay.json()["status"] == RunStatus.PENDING
    assert WorkflowRun.objects.get().replay_count == 1
    assert admin_api.get("/api/runs/999999/").status_code == 404
    # A workflow with runs can be deleted; its runs and step runs go with it.
    assert admin_api.delete(f"/api/workflows/{wf.key}/").status_code == 204
    assert not WorkflowRun.objects.exists()


def test_api__schema_is_served(admin_api):
    schema = admin_api.get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/events/", "/api/workflows/", "/api/runs/{id}/replay/"} <= set(paths)


@pytest.mark.parametrize("param", ["status", "trace_id", "workflow"])
def test_api__run_filters_with_a_nul_character_are_400_not_500(admin_api, param):
    # Found by schemathesis on PostgreSQL, which refuses NUL in text parameters.
    response = admin_api.get("/api/runs/", {param: "a\x00b"})
    assert response.status_code == 400
    assert "must not contain NUL characters" in str(response.json())


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/events/", '{"connector": "my_service", "payload": {"a": "x\\u0000y"}}'),
        ("/api/events/", '{"connector": "my_service", "id": "i\\u0000d"}'),
        ("/api/events/", '{"connector": "my_service", "payload": {"k": "\\ud800"}}'),
        ("/api/workflows/", '{"name": "n\\u0000", "steps": []}'),
    ],
)
def test_api__unstorable_text_in_a_body_is_400_and_stores_nothing(admin_api, url, body):
    response = admin_api.post(url, body, content_type="application/json")
    assert response.status_code == 400
    assert "must not contain NUL characters" in str(response.json())
    assert not OutboxItem.objects.exists()
    assert not Workflow.objects.exists()


def test_api__unstorable_input_still_needs_authentication():
    body = '{"connector": "my_service", "payload": {"a": "x\\u0000y"}}'
    response = Client().post("/api/events/", body, content_type="application/json")
    assert response.status_code in (401, 403)
