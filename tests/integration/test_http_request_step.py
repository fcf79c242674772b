"""`http_request` through the SSRF-safe client, end to end in the embedded worker."""

from __future__ import annotations

import json

import pytest

from automate.models import RunStatus
from automate.services import WorkflowService
from tests.core.helpers import LocalServer, send

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def granted_token(settings):
    """The step's credential: its own secret, granted to the loopback target for steps."""
    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "SECRETS": {**settings.AUTOMATE["SECRETS"], "hook-token": "hook-token-value"},
        "SECRET_GRANTS": {"hook-token": {"hosts": ["127.0.0.1"], "uses": ["http_request"]}},
    }


@pytest.fixture
def target():
    server = LocalServer()

    def hook(handler):
        send(handler, 200, b'{"ok": true}', {"Content-Type": "application/json"})

    server.routes["/hook"] = hook
    server.start()
    yield server
    server.stop()


@pytest.fixture
def drain():
    from automate.worker import EmbeddedWorker

    return lambda: EmbeddedWorker(threads=1, poll_seconds=0).run(once=True)


def notify_workflow(url: str):
    return WorkflowService().create_workflow(
        name="Notify",
        steps=[
            {
                "name": "Notify",
                "type": "http_request",
                "config": {
                    "method": "POST",
                    "url": url,
                    "json": {"order": "{{ event.payload.id }}"},
                    "credentials_ref": "secret://hook-token",
                },
            }
        ],
    )


def test_http_request_step__posts_the_rendered_body_to_an_allowed_host(target, drain):
    with target.allowed():
        run = WorkflowService().run_workflow(
            notify_workflow(target.url("/hook")), {"payload": {"id": 42}}
        )
        assert drain() == {"done": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    [(method, path, headers, body)] = target.requests
    assert (method, path, json.loads(body)) == ("POST", "/hook", {"order": 42})
    assert headers["Authorization"] == "Bearer hook-token-value"
    output = run.step_runs.get().output
    assert output["status_code"] == 200
    # The resolved credential never lands in the stored step input.
    assert "hook-token-value" not in json.dumps(run.step_runs.get().input)


def test_http_request_step__private_address_is_refused_and_nothing_is_sent(target, drain):
    # No allow-list: 127.0.0.1 is not a public address, so the step must not reach it.
    run = WorkflowService().run_workflow(
        notify_workflow(target.url("/hook")), {"payload": {"id": 1}}
    )
    drain()
    run.refresh_from_db()
    assert run.status != RunStatus.COMPLETED
    assert target.requests == []
    step = run.step_runs.get()
    assert step.error["code"] == "permission_denied"
