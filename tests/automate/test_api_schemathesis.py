"""Schemathesis against the served OpenAPI schema: no generated request gets a 5xx."""

from __future__ import annotations

import base64

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from automate.services import WorkflowService

pytestmark = pytest.mark.django_db

AUTH = {"Authorization": "Basic " + base64.b64encode(b"root:pw").decode()}


@pytest.fixture
def keep_test_connection():
    """What django.test.Client does: a request must not close the test's connection
    (and with it the transaction this test runs in)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def test_api__schemathesis_finds_no_server_error(keep_test_connection):
    User.objects.create_superuser("root", "root@example.com", "pw")
    WorkflowService().create_workflow(
        name="Existing",
        steps=[{"name": "F", "type": "filter", "config": {"condition": True}}],
        trigger="my_service",
    )
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler(), headers=AUTH)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:
        fuzz(operation)


def fuzz(operation) -> None:
    @settings(
        max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=operation.as_strategy())
    def check(case):
        case.call_and_validate(headers=AUTH, checks=[not_a_server_error])

    check()
