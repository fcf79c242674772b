"""One structured line per webhook decision, run end and step failure (automate.events)."""

from __future__ import annotations

import json
import logging

import pytest

from tests.automate.test_webhook_view import post
from tests.observability.conftest import drain, notify_workflow, send_event

pytestmark = pytest.mark.django_db(transaction=True)


def events(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "automate.events"]


def test_logs__webhook_run_and_step_failure_lines(caplog, target, csrf_client):
    caplog.set_level(logging.INFO, logger="automate.events")
    notify_workflow(target.url("/hook"), max_attempts=1)  # refused: no loopback allowance
    response = send_event(csrf_client)
    trace_id = response.json()["trace_id"]
    post(csrf_client, b'{"id": "x"}', signature="bad")
    drain()
    webhook, refused, step, run = events(caplog)
    assert webhook.getMessage() == (
        f"event=webhook connector=my_service status=202 trace_id={trace_id} "
        f"outbox_id={response.json()['id']}"
    )
    assert refused.levelno == logging.WARNING
    assert "status=401" in refused.getMessage()
    assert 'error="signature verification failed"' in refused.getMessage()
    assert step.getMessage().startswith(
        "event=step_failed workflow=notify step=Notify step_type=http_request attempt=1 "
    )
    assert step.error_code == "permission_denied" and step.trace_id == trace_id
    assert run.event == "run" and run.outcome == "dead" and run.error_code == "permission_denied"
    assert run.workflow == "notify" and run.trace_id == trace_id
    assert "s3cr3t-payload" not in caplog.text


def test_logs__json_lines_with_log_json(caplog, settings, csrf_client):
    settings.AUTOMATE = {**settings.AUTOMATE, "LOG_JSON": True}
    caplog.set_level(logging.INFO, logger="automate.events")
    response = send_event(csrf_client)
    [line] = events(caplog)
    assert json.loads(line.getMessage()) == {
        "event": "webhook",
        "connector": "my_service",
        "status": 202,
        "trace_id": response.json()["trace_id"],
        "outbox_id": response.json()["id"],
    }


def test_logs__nothing_formatted_when_the_logger_is_off(caplog, csrf_client):
    caplog.set_level(logging.ERROR, logger="automate.events")
    send_event(csrf_client)
    assert events(caplog) == []
