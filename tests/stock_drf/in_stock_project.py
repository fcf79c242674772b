"""The REST API in a project with stock DRF settings (run by test_api_stock_drf.py only)."""

from __future__ import annotations

import base64

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import User
from django.core import checks
from django.test import Client

from automate.worker import EmbeddedWorker
from tests.stock_drf.api_walkthrough import DOC, comparable, requests_in, send

pytestmark = pytest.mark.django_db

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
STEPS = [{"name": "Only", "type": "filter", "config": {"condition": True}}]


def test_the_project_has_stock_drf_settings():
    assert not hasattr(settings, "REST_FRAMEWORK")
    assert not apps.is_installed("drf_spectacular")


def test_schema_is_an_openapi_document_of_the_api_only():
    assert Client().get("/api/schema/").status_code in (401, 403)  # the API's users only
    User.objects.create_superuser("reader", password="pw")
    client = Client()
    assert client.login(username="reader", password="pw")
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content[:2000]
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert {"/api/events/", "/api/workflows/{key}/run/", "/api/runs/{id}/replay/"} <= set(
        document["paths"]
    )
    # The project's own view keeps DRF's schema class and is not ours to describe.
    assert "/hello/" not in document["paths"]
    run = document["paths"]["/api/workflows/{key}/run/"]["post"]
    assert run["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ManualRun"
    }
    yaml = client.get("/api/schema/")
    assert yaml.status_code == 200
    assert yaml.content.startswith(b"openapi: 3.")


def test_browsable_api_for_a_staff_user():
    User.objects.create_user("staff", password="pw", is_staff=True, is_superuser=True)
    client = Client()
    assert client.login(username="staff", password="pw")
    response = client.get("/api/workflows/", HTTP_ACCEPT=BROWSER_ACCEPT)
    assert response.status_code == 200, response.content[:2000]
    if apps.is_installed("rest_framework"):
        assert response["Content-Type"].startswith("text/html")
        assert b"Django REST framework" in response.content
        html_only = client.get("/api/runs/", HTTP_ACCEPT="text/html")
        assert html_only.status_code == 200
        assert html_only["Content-Type"].startswith("text/html")
    else:
        # No DRF templates: a browser gets JSON, not a TemplateDoesNotExist 500.
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_browsable_api_check():
    ids = [m.id for m in checks.run_checks(tags=["automate"])]
    if apps.is_installed("rest_framework"):
        assert "automate.W020" not in ids
    else:
        assert "automate.W020" in ids


def test_json_api_with_basic_auth():
    User.objects.create_superuser("root", "root@example.com", "pw")
    token = base64.b64encode(b"root:pw").decode()
    client = Client(HTTP_AUTHORIZATION=f"Basic {token}")
    created = client.post(
        "/api/workflows/",
        {"name": "Stock", "steps": STEPS, "trigger": {"connector": "github"}},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["key"] == "stock"
    listed = client.get("/api/workflows/", HTTP_ACCEPT="application/json")
    assert [w["key"] for w in listed.json()["results"]] == ["stock"]
    event = {"connector": "github", "type": "ping", "payload": {"n": 1}}
    queued = client.post("/api/events/", event, content_type="application/json")
    assert queued.status_code == 202, queued.content
    assert set(queued.json()) == {"id", "trace_id"}
    assert Client().get("/api/workflows/").status_code in (401, 403)


@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_the_requests_of_docs_api_md_answer_as_documented():
    requests = requests_in(DOC.read_text())
    assert len(requests) >= 9
    User.objects.create_superuser(requests[0].user, "admin@example.com", requests[0].password)
    client = Client()
    for request in requests:
        response = send(client, request)
        # Runs settle before the next request, as they would with a worker running.
        EmbeddedWorker(threads=1, poll_seconds=0).run(once=True)
        where = f"{request.method} {request.path}"
        assert response.status_code == request.status, (where, response.content[:2000])
        assert request.answer is not None, f"{where}: no ```json answer after it in the doc"
        assert comparable(response.json()) == comparable(request.answer), where
