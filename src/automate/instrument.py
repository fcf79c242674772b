"""The engine's observability hooks: one call at each point of the data flow.

Data flow: ``WebhookView`` (:func:`webhook`, with the :func:`verify` and :func:`store`
phases inside) -> the dispatcher's claim (:func:`claimed`, which also writes the heartbeat) ->
a worker's pass over a run (:func:`run`) -> each step attempt (:func:`step`). Every hook
opens an OpenTelemetry span, feeds the Prometheus metrics and writes the structured log
line of :mod:`automate_core.observability.logs`; each part does nothing when its extra
is missing. The spans of one event form one trace: the webhook's SERVER span is the
root, its ``traceparent`` is stored on the outbox row, and the worker's claim and run
spans are its children, whichever process or Celery worker runs them. The request's
phases (verify, store) are attributes of its one span rather than spans of their own:
a span costs the SDK far more than an attribute, and a webhook is the hot path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any, Literal

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.http import HttpResponse
from django.utils import timezone

from automate import heartbeat
from automate.models import WebhookRefusalMinute
from automate_core.observability import logs, metrics, spans
from automate_core.outbox.models import OutboxItem
from automate_core.tracing import trace

__all__ = ["claimed", "count_refusal", "run", "step", "store", "verify", "webhook"]

#: A connector key only becomes a label once it names a connector (not on a 404).
UNKNOWN_CONNECTOR = "unknown"


#: The webhook request being answered, when its span records: :func:`verify` and
#: :func:`store` put their phase's attributes on it.
_recording: ContextVar[webhook | None] = ContextVar("automate_webhook", default=None)


class webhook:
    """The SERVER span of one webhook request, its metrics and its decision log line.

    ``with webhook(key) as obs, trace(obs.trace_id) as trace_id: obs.answered(response)``:
    ``obs.trace_id`` is the OpenTelemetry trace id when tracing is on, else None (the
    view then makes its own).
    """

    __slots__ = ("attributes", "connector", "response", "span", "started", "token")

    def __init__(self, connector: str) -> None:
        self.connector, self.started = connector, time.perf_counter()
        self.response: HttpResponse | None = None
        self.token: Any = None
        #: The phases' attributes, set on the span in one call at the end.
        self.attributes: dict[str, Any] = {}
        self.span = spans.span(
            "POST /webhooks/{connector_key}/",
            {
                "http.request.method": "POST",
                "http.route": "webhooks/<str:connector_key>/",
                "automate.connector": connector,
            },
            kind="server",
        )

    @property
    def trace_id(self) -> str | None:
        return self.span.trace_id

    def __enter__(self) -> webhook:
        self.span.__enter__()
        if self.span.recording:  # else nothing would keep the phases' attributes
            self.token = _recording.set(self)
        return self

    def answered(self, response: HttpResponse) -> HttpResponse:
        self.response = response
        return response

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        status = self.response.status_code if self.response is not None else 500
        label = UNKNOWN_CONNECTOR if status == 404 else self.connector
        if self.token is not None:
            _recording.reset(self.token)
            self.attributes["http.response.status_code"] = status
            self.span.update(self.attributes)
            if status >= 500:
                self.span.fail(str(status))
        metrics.webhook(label, status, time.perf_counter() - self.started)
        if status == 401:  # the overview's "most 401s"; other refusals only in metrics
            count_refusal(label, status)
        level = logging.INFO if status < 400 else logging.WARNING
        if logs.enabled(level):  # the answer is read only for a line that is written
            logs.event(
                "webhook",
                level,
                connector=label,
                status=status,
                trace_id=_response_field(self.response, "trace_id"),
                outbox_id=_response_field(self.response, "id"),
                duplicate=_response_field(self.response, "duplicate"),
                error=_response_field(self.response, "error"),
            )
        return self.span.__exit__(exc_type, exc, tb)


def count_refusal(connector: str, status: int) -> None:
    """Add one refused request to its minute's row; never raises."""
    minute = timezone.now().replace(second=0, microsecond=0)
    rows = WebhookRefusalMinute.objects.filter(
        minute=minute, connector_key=connector[:100], status=status
    )
    try:
        if rows.update(count=F("count") + 1):
            return
        with transaction.atomic():
            WebhookRefusalMinute.objects.create(
                minute=minute, connector_key=connector[:100], status=status, count=1
            )
    except IntegrityError:  # another request made the row first
        rows.update(count=F("count") + 1)
    except DatabaseError:
        pass


def _response_field(response: HttpResponse | None, name: str) -> Any:
    """A field of the view's own JSON answer (ids, codes, a fixed message); None if
    absent. A handshake answer (a connector's challenge) is never read."""
    if response is None or response.status_code not in (200, 202, 400, 401, 404, 413, 503):
        return None
    data = getattr(response, "_automate_fields", None)
    if data is None:
        import json

        try:
            data = json.loads(response.content) if response.content[:1] == b"{" else {}
        except ValueError:
            data = {}
        data = {k: data[k] for k in ("trace_id", "id", "duplicate", "error") if k in data}
        response._automate_fields = data  # type: ignore[attr-defined]
    return data.get(name)


class _Phase:
    """A phase of a webhook request: its duration (``<name>_seconds``), and the extra
    attributes it was given, become attributes of the request's span."""

    __slots__ = ("attributes", "name", "request", "started")

    def __init__(self, request: webhook, name: str, attributes: dict[str, Any]) -> None:
        self.request, self.name, self.attributes = request, name, attributes
        self.started = 0.0

    def __enter__(self) -> _Phase:
        self.started = time.perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        attributes = self.request.attributes
        attributes[self.name] = time.perf_counter() - self.started
        attributes.update(self.attributes)
        if exc is not None:  # the request's span fails with it as the exception leaves
            attributes["automate.webhook.failed_phase"] = self.name.rpartition("_")[0]
        return False


def verify(connector: str) -> Any:
    """The connector's signature check: ``automate.webhook.verify_seconds`` on the
    request's span."""
    request = _recording.get()
    if request is None:
        return spans.NO_SPAN
    return _Phase(request, "automate.webhook.verify_seconds", {})


def store(connector: str, event_type: str) -> Any:
    """The outbox INSERT: ``automate.outbox.store_seconds`` and ``automate.event_type``
    on the request's span."""
    request = _recording.get()
    if request is None:
        return spans.NO_SPAN
    return _Phase(
        request, "automate.outbox.store_seconds", {"automate.event_type": event_type[:200]}
    )


def claimed(items: Sequence[Any], started_ns: int, worker: str) -> None:
    """After a claim: one ``automate.claim`` span per item, in the item's own trace
    (from ``started_ns`` to now), and this worker's heartbeat."""
    heartbeat.beat(worker)
    if not items or not spans.enabled():
        return
    contexts = _trace_contexts(items)
    now = time.time_ns()
    for item in items:
        parent = contexts.get(item.pk)
        if not parent:
            continue
        spans.record(
            "automate.claim",
            {"automate.outbox_id": item.pk, "automate.worker": worker[:200]},
            parent=parent,
            start_time=started_ns,
            end_time=now,
        )


def _trace_contexts(items: Sequence[Any]) -> dict[int, str]:
    """Each item's stored traceparent; one SELECT when the claim loaded only ids."""
    # Loaded fields are in the instance's __dict__ (get_deferred_fields() walks them all).
    if all("trace_context" in item.__dict__ for item in items):
        return {item.pk: item.trace_context for item in items}
    rows = OutboxItem.objects.filter(pk__in=[i.pk for i in items])
    return dict(rows.values_list("pk", "trace_context"))


class run:
    """A worker's pass over one run: a span in the event's trace, the queue lag on the
    run's first start, and at the end ``automate_runs_total`` and the run's log line.

    A run stays in the trace of the event that started it, whichever item carries it: a
    run a ``wait_for_event`` reply resumed is carried by the reply's item, in the reply's
    trace. Its span's parent is then the span that started the run, read from the run's
    own item (one SELECT per resumed run, only when spans are recorded), with a link to
    the reply's span; the trace id bound for its log lines (``%(trace_id)s``) is the
    run's, and its run log line names the reply's trace (``resumed_by_trace_id``).
    """

    __slots__ = ("first", "item", "run", "span", "started", "trace")

    def __init__(self, workflow_run: Any, item: Any) -> None:
        self.run, self.item = workflow_run, item
        self.first = workflow_run.started_at is None
        self.started = time.perf_counter()
        workflow = workflow_run.workflow
        parent = getattr(item, "trace_context", "") or None
        links: tuple[str, ...] = ()
        if workflow_run.outbox_item_id not in (None, item.pk) and spans.enabled():
            # Resumed by another item (a reply, a timer): back under the run's own start.
            parent, links = _traceparent_of(workflow_run.outbox_item_id), (parent or "",)
        # The ContextVar is only set for a run whose trace is not its carrier's (a reply):
        # every other run's trace id is bound already, the item's.
        self.trace = trace(workflow_run.trace_id) if _other_trace(workflow_run, item) else None
        self.span = spans.span(
            "automate.run",
            {
                "automate.workflow": workflow.key,
                "automate.workflow_version": workflow_run.workflow_version,
                "automate.run_id": workflow_run.pk,
                "automate.outbox_id": item.pk,
                "automate.replay": workflow_run.replay_count,
            },
            parent=parent,
            links=links,
        )

    def __enter__(self) -> run:
        if self.first and self.item.created_at is not None:
            metrics.queue_lag((timezone.now() - self.item.created_at).total_seconds())
        if self.trace is not None:
            self.trace.__enter__()
        self.span.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        wf_run = self.run
        status = str(wf_run.status)
        self.span.set("automate.outcome", status)
        if status in ("completed", "filtered", "dead", "retrying", "waiting"):
            code = (wf_run.error or {}).get("code") if status in ("dead", "retrying") else None
            if code:
                self.span.fail(str(code))
            key = wf_run.workflow.key
            metrics.run_finished(key, status)
            level = logging.WARNING if status == "dead" else logging.INFO
            if logs.enabled(level):  # its fields are built only for a line that is written
                logs.event(
                    "run",
                    level,
                    workflow=key,
                    run_id=wf_run.pk,
                    outcome=status,
                    error_code=code,
                    trace_id=wf_run.trace_id,
                    resumed_by_trace_id=self.item.trace_id if self.trace is not None else None,
                    duration_ms=round((time.perf_counter() - self.started) * 1000, 1),
                )
        try:
            return self.span.__exit__(exc_type, exc, tb)
        finally:
            if self.trace is not None:
                self.trace.__exit__()


def _other_trace(workflow_run: Any, item: Any) -> bool:
    """Whether ``workflow_run`` belongs to another trace than the item carrying it."""
    return bool(workflow_run.trace_id) and workflow_run.trace_id != item.trace_id


def _traceparent_of(item_id: int) -> str | None:
    """The ``traceparent`` stored with an outbox item: where its event's trace began."""
    stored = OutboxItem.objects.filter(pk=item_id).values_list("trace_context", flat=True)
    return stored.first() or None


class step:
    """One step attempt: its span (type, name, attempt, outcome), the step metrics and,
    on failure, the step's log line with the error code."""

    __slots__ = ("attempt", "run", "span", "started", "step")

    def __init__(self, workflow_run: Any, workflow_step: Any, attempt: int) -> None:
        self.run, self.step, self.attempt = workflow_run, workflow_step, attempt
        self.started = time.perf_counter()
        self.span = spans.span(
            f"automate.step {workflow_step.type}",
            {
                "automate.step.name": workflow_step.name,
                "automate.step.type": workflow_step.type,
                "automate.step.attempt": attempt,
                "automate.run_id": workflow_run.pk,
            },
        )

    def __enter__(self) -> step:
        self.span.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        seconds = time.perf_counter() - self.started
        outcome = "succeeded" if exc is None else "failed"
        self.span.set("automate.outcome", outcome)
        metrics.step_attempt(self.step.type, outcome, seconds)
        if exc is not None:
            code = str(getattr(exc, "code", None) or type(exc).__name__)
            logs.event(
                "step_failed",
                logging.WARNING,
                workflow=self.run.workflow.key,
                step=self.step.name,
                step_type=self.step.type,
                attempt=self.attempt,
                run_id=self.run.pk,
                error_code=code,
                retryable=getattr(exc, "retryable", None),
                trace_id=self.run.trace_id,
            )
        return self.span.__exit__(exc_type, exc, tb)


# -- Celery: the sender's context travels in the message headers ------------------------


def inject_celery_headers(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """``before_task_publish`` receiver: put the current ``traceparent`` in the message."""
    if headers is not None:
        spans.inject(headers)


_task_spans: dict[str, tuple[Any, Any]] = {}


def start_task_span(task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    """``task_prerun`` receiver: an ``automate.task`` span, child of the sender's span."""
    if task is None or not spans.enabled() or not str(task.name).startswith("automate."):
        return
    request = task.request
    carrier = {k: getattr(request, k, None) for k in ("traceparent", "tracestate")}
    token = spans.attach(spans.extract_context({k: v for k, v in carrier.items() if v}))
    task_span = spans.span(
        f"automate.task {task.name}", {"celery.task_id": task_id}, kind="consumer"
    )
    task_span.__enter__()
    _task_spans[task_id] = (task_span, token)


def end_task_span(task_id: str = "", **kwargs: Any) -> None:
    """``task_postrun`` receiver: end the task's span."""
    found = _task_spans.pop(task_id, None)
    if found is not None:
        task_span, token = found
        task_span.__exit__(None, None, None)
        spans.detach(token)


def connect_celery() -> None:
    """Connect the receivers above (``AutomateConfig.ready``)."""
    from celery import signals as celery_signals

    celery_signals.before_task_publish.connect(
        inject_celery_headers, dispatch_uid="automate.otel.publish", weak=False
    )
    celery_signals.task_prerun.connect(
        start_task_span, dispatch_uid="automate.otel.prerun", weak=False
    )
    celery_signals.task_postrun.connect(
        end_task_span, dispatch_uid="automate.otel.postrun", weak=False
    )
