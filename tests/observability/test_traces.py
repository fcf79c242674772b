"""OpenTelemetry: one trace per event, from the webhook request to its last step.

The SDK's in-memory exporter records what the engine's hooks emit; the worker runs in
this process (the embedded worker). The Celery case is in test_traces_celery.py.
"""

from __future__ import annotations

import json
import sys

import pytest

from automate_core.models import OutboxItem
from automate_core.observability import metrics, spans
from tests.observability.conftest import drain, notify_workflow, send_event

pytestmark = pytest.mark.django_db(transaction=True)


def _by_name(finished) -> dict[str, list]:
    found: dict[str, list] = {}
    for s in finished:
        found.setdefault(s.name, []).append(s)
    return found


def test_traces__one_webhook_gives_one_tree_from_request_to_outbound_call(
    exporter, target, loopback, csrf_client
):
    notify_workflow(target.url("/hook"))
    response = send_event(csrf_client)
    assert response.status_code == 202
    assert drain() == {"done": 1}

    finished = exporter.get_finished_spans()
    names = _by_name(finished)
    [root] = names["POST /webhooks/{connector_key}/"]
    trace_id = format(root.context.trace_id, "032x")
    # The id the webhook answered with is the OpenTelemetry trace id, stored on the row.
    assert response.json()["trace_id"] == trace_id
    assert response["X-Automate-Trace-Id"] == trace_id
    item = OutboxItem.objects.get()
    assert item.trace_id == trace_id

    assert {format(s.context.trace_id, "032x") for s in finished} == {trace_id}
    assert root.parent is None
    assert root.kind.name == "SERVER"
    assert root.attributes["http.response.status_code"] == 202
    assert root.attributes["automate.connector"] == "my_service"

    def parent_of(span):
        return next(s for s in finished if s.context.span_id == span.parent.span_id)

    # One span per request: its phases are attributes, not spans.
    assert set(names) == {
        "POST /webhooks/{connector_key}/",
        "automate.claim",
        "automate.run",
        "automate.step http_request",
        "HTTP POST",
    }
    assert root.attributes["automate.event_type"] == "order.paid"
    assert root.attributes["automate.webhook.verify_seconds"] > 0
    assert root.attributes["automate.outbox.store_seconds"] > 0
    assert "automate.webhook.failed_phase" not in root.attributes
    [claim] = names["automate.claim"]
    [run] = names["automate.run"]
    [step] = names["automate.step http_request"]
    [http] = names["HTTP POST"]
    # The worker's spans continue from the request's span, whose context the row keeps.
    assert item.trace_context.split("-")[1:3] == [trace_id, format(root.context.span_id, "016x")]
    assert parent_of(claim) is root and parent_of(run) is root
    assert parent_of(step) is run
    assert parent_of(http) is step

    assert run.attributes["automate.workflow"] == "notify"
    assert run.attributes["automate.outcome"] == "completed"
    assert step.attributes["automate.step.type"] == "http_request"
    assert step.attributes["automate.step.attempt"] == 1
    assert step.attributes["automate.outcome"] == "succeeded"
    assert http.kind.name == "CLIENT"
    assert http.attributes["http.response.status_code"] == 200
    assert http.attributes["server.address"] == "127.0.0.1"
    assert all(s.status.status_code.name == "OK" for s in finished)

    # The callee was sent the HTTP span's context: it joins the trace.
    [(_, _, headers, _)] = target.requests
    assert headers["traceparent"].split("-")[1:3] == [
        trace_id,
        format(http.context.span_id, "016x"),
    ]

    # No payload value, URL path or header value in any attribute.
    attributes = json.dumps([dict(s.attributes) for s in finished], default=str)
    assert "s3cr3t-payload" not in attributes
    assert "/hook" not in attributes
    assert "evt_1" not in attributes


def test_traces__a_failing_step_marks_its_spans_failed_with_the_error_code(
    exporter, target, loopback, csrf_client
):
    notify_workflow(target.url("/fail"), max_attempts=1)
    send_event(csrf_client)
    drain()
    names = _by_name(exporter.get_finished_spans())
    [step] = names["automate.step http_request"]
    [run] = names["automate.run"]
    [http] = names["HTTP POST"]
    assert step.attributes["automate.outcome"] == "failed"
    assert step.status.status_code.name == "ERROR"
    assert step.attributes["automate.error_code"] == step.status.description
    assert http.attributes["http.response.status_code"] == 500
    assert http.status.status_code.name == "ERROR"
    assert run.attributes["automate.outcome"] == "dead"
    assert run.status.status_code.name == "ERROR"


def test_traces__refused_webhook_is_a_server_span_with_status_401(exporter, csrf_client):
    from tests.automate.test_webhook_view import post

    response = post(csrf_client, b'{"id": "x"}', signature="bad")
    assert response.status_code == 401
    [root] = _by_name(exporter.get_finished_spans())["POST /webhooks/{connector_key}/"]
    assert root.attributes["http.response.status_code"] == 401
    # Verified (and refused), never stored: the phases say how far the request went.
    assert root.attributes["automate.webhook.verify_seconds"] > 0
    assert "automate.outbox.store_seconds" not in root.attributes
    assert response.json()["trace_id"] == format(root.context.trace_id, "032x")
    assert OutboxItem.objects.count() == 0


def test_traces__ssrf_refusal_is_a_failed_client_span(exporter, target, csrf_client):
    # No loopback allowance: the SSRF rules refuse 127.0.0.1 and nothing is sent.
    notify_workflow(target.url("/hook"), max_attempts=1)
    send_event(csrf_client)
    drain()
    [http] = _by_name(exporter.get_finished_spans())["HTTP POST"]
    assert http.status.status_code.name == "ERROR"
    assert http.attributes["error.type"] == "SSRFError"
    assert target.requests == []


def test_traces__llm_call_is_a_gen_ai_client_span(exporter, db):
    from automate_llm.calls import run_chat
    from automate_llm.models import LLMProfile

    profile = LLMProfile.objects.create(key="offline", provider_key="offline", config={})
    with spans.span("parent"):
        call = run_chat(profile, [{"role": "user", "content": "private words"}])
    names = _by_name(exporter.get_finished_spans())
    [llm] = [s for s in exporter.get_finished_spans() if s.name.startswith("chat")]
    [parent] = names["parent"]
    assert llm.parent.span_id == parent.context.span_id
    assert llm.kind.name == "CLIENT"
    assert llm.attributes["gen_ai.operation.name"] == "chat"
    assert llm.attributes["gen_ai.provider.name"] == "offline"
    assert llm.attributes["gen_ai.usage.input_tokens"] == call.result.usage.input_tokens
    assert llm.attributes["gen_ai.usage.output_tokens"] == call.result.usage.output_tokens
    assert "private words" not in json.dumps(dict(llm.attributes), default=str)


def test_traces__off_without_a_tracer_provider(csrf_client):
    """The API is importable (other extras bring it) but no provider is set: no spans,
    the shared no-op object, a trace id of our own."""
    assert not spans.enabled()
    assert spans.span("x") is spans.NO_SPAN
    assert spans.current_traceparent() == ""
    response = send_event(csrf_client)
    assert response.status_code == 202
    assert OutboxItem.objects.get().trace_context == ""
    assert len(response.json()["trace_id"]) == 32


def test_traces__a_request_the_sampler_leaves_out_keeps_its_trace_id(exporter, csrf_client):
    """A sampler that drops the trace: no span is exported, yet the request answers with
    the trace's id and the row keeps its context, so the run joins the same (unsampled)
    trace."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans.configure(provider)
    try:
        response = send_event(csrf_client)
    finally:
        spans.configure(None)
        provider.shutdown()
    assert response.status_code == 202
    assert exporter.get_finished_spans() == ()
    item = OutboxItem.objects.get()
    assert response.json()["trace_id"] == item.trace_id
    assert item.trace_context.split("-")[1] == item.trace_id
    assert int(item.trace_context.rsplit("-", 1)[1], 16) & 1 == 0  # the "sampled" flag off


@pytest.fixture
def blocked(monkeypatch):
    """``opentelemetry`` and ``prometheus_client`` cannot be imported (the extras absent)."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("opentelemetry", "prometheus_client"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setattr(metrics, "_m", metrics._UNSET)
    spans.reset()
    yield
    spans.reset()


def test_traces__extras_blocked_nothing_is_recorded_and_the_engine_runs(
    exporter, blocked, target, loopback, csrf_client, client
):
    notify_workflow(target.url("/hook"))
    response = send_event(csrf_client)
    assert response.status_code == 202
    assert drain() == {"done": 1}
    # The exporter's provider is configured, but without the API nothing reaches it.
    assert exporter.get_finished_spans() == ()
    assert not spans.enabled() and not metrics.enabled()
    assert spans.span("x") is spans.NO_SPAN
    assert "traceparent" not in target.requests[0][2]
    assert OutboxItem.objects.get().trace_context == ""
