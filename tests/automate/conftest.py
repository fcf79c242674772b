"""Helpers for the workflow engine's tests."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from tests.connectors.signing import github_signature
from tests.testapp.engine_connectors import RecorderConnector

GITHUB_SECRET = "engine-tests-github"


@pytest.fixture(autouse=True)
def recorder_calls():
    """The in-process record of RecorderConnector calls, empty for each test."""
    RecorderConnector.calls.clear()
    yield RecorderConnector.calls
    RecorderConnector.calls.clear()


@pytest.fixture
def drain():
    """Run the embedded worker in this thread until nothing is due; ``due=True`` first
    makes every waiting retry due now (instead of sleeping through its backoff)."""
    from automate.worker import EmbeddedWorker
    from automate_core.outbox.models import OutboxItem

    def run(*, due: bool = False) -> dict[str, int]:
        if due:
            OutboxItem.objects.filter(status="failed").update(available_at=timezone.now())
        return EmbeddedWorker(threads=1, poll_seconds=0).run(once=True)

    return run


@pytest.fixture
def post_github():
    """The GitHub connector set up with a known secret, and a function that posts a body
    to its webhook as GitHub delivers a ``pull_request`` event (signed, with its delivery
    id and hook id), through a client that checks CSRF and sends a session cookie, as a
    browser on the same site would: neither may matter to the webhook view."""

    def post(body: bytes, delivery: str):
        return Client(enforce_csrf_checks=True).post(
            "/webhooks/github/",
            data=body,
            content_type="application/json",
            headers={
                "X-Hub-Signature-256": github_signature(GITHUB_SECRET, body),
                "X-GitHub-Event": "pull_request",
                "X-GitHub-Delivery": delivery,
                "X-GitHub-Hook-ID": "42",
                "Cookie": "session=never-stored",
            },
        )

    automate = {
        "SECRETS": {"github": GITHUB_SECRET},
        "CONNECTORS": {"github": {"secrets": ["secret://github"]}},
    }
    with override_settings(AUTOMATE=automate):
        yield post
