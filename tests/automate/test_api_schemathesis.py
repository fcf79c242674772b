"""Schemathesis against the served OpenAPI schema: no generated request gets a 5xx."""

from __future__ import annotations

import base64

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from automate.services import WorkflowService

pytestmark = pytest.mark.django_db

AUTH = {"Authorization": "Basic " + base64.b64encode(b"root:pw").decode()}


def test_api__schemathesis_finds_no_server_error():
    User.objects.create_superuser("root", "root@example.com", "pw")
    WorkflowService().create_workflow(
        name="Existing",
        steps=[{"name": "F", "type": "filter", "config": {"condition": True}}],
        trigger="my_service",
    )
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler())
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
