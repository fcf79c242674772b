"""OpenTelemetry spans through the API alone, and no cost when tracing is off.

Tracing is on when ``opentelemetry`` imports (the ``otel`` extra) and a real tracer
provider is configured: the one given to :func:`configure`, else the global one a project
sets up (``opentelemetry.trace.set_tracer_provider`` or ``opentelemetry-instrument``).
Otherwise :func:`span` returns one shared :data:`NO_SPAN` whose methods do nothing, and
the propagation helpers return empty values: nothing is recorded, nothing is allocated.

Attributes carry names, keys, codes and counts only: never a payload, a body, a header
value or an exception message (a message may quote either). An error sets the span's
status to ERROR with the error's code (``AutomateError.code``) or type name.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from types import SimpleNamespace
from typing import Any, Literal

__all__ = [
    "NO_SPAN",
    "configure",
    "context_from",
    "current_trace_id",
    "current_traceparent",
    "enabled",
    "inject",
    "record",
    "span",
]

TRACER_NAME = "django-automate"

_UNSET: Any = object()
_api: Any = _UNSET  # a namespace of the OpenTelemetry API, or None when it is missing
_provider_override: Any = None
_tracer_cache: tuple[Any, Any] | None = None


def _otel() -> Any:
    global _api
    if _api is _UNSET:
        try:
            from opentelemetry import context, propagate, trace
            from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError:
            _api = None
        else:
            _api = SimpleNamespace(
                trace=trace,
                context=context,
                propagate=propagate,
                w3c=TraceContextTextMapPropagator(),
                off=(NoOpTracerProvider, ProxyTracerProvider),
                kinds={kind.name.lower(): kind for kind in trace.SpanKind},
                ok=trace.StatusCode.OK,
            )
    return _api


def configure(tracer_provider: Any = None) -> None:
    """Use ``tracer_provider`` instead of the global one (``None``: the global one again).

    For tests and for projects that keep a provider of their own for this library.
    """
    global _provider_override, _tracer_cache
    _provider_override, _tracer_cache = tracer_provider, None


def reset() -> None:
    """Forget whether ``opentelemetry`` imports (tests that block the import call it)."""
    global _api, _tracer_cache
    _api, _tracer_cache = _UNSET, None
    _contexts.clear()


def _tracer() -> Any:
    """The tracer when tracing is on, else None: a type check and a comparison."""
    global _tracer_cache
    api = _otel()
    if api is None:
        return None
    provider = _provider_override or api.trace.get_tracer_provider()
    cached = _tracer_cache
    if cached is not None and cached[0] is provider:
        return cached[1]
    if isinstance(provider, api.off):
        return None
    tracer = provider.get_tracer(TRACER_NAME)
    _tracer_cache = (provider, tracer)
    return tracer


def enabled() -> bool:
    """Whether spans are recorded."""
    return _tracer() is not None


class _NoSpan:
    """What every helper gives when tracing is off: one shared, stateless object."""

    __slots__ = ()
    trace_id: str | None = None
    traceparent = ""
    recording = False

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        return False

    def set(self, key: str, value: Any) -> None:
        pass

    def update(self, attributes: Mapping[str, Any]) -> None:
        pass

    def fail(self, code: str, error_type: str | None = None) -> None:
        pass


NO_SPAN = _NoSpan()


class Span:
    """A started span made current for a ``with`` block."""

    __slots__ = ("_api", "_failed", "_span", "_token")

    def __init__(self, api: Any, otel_span: Any) -> None:
        self._api, self._span, self._token, self._failed = api, otel_span, None, False

    @property
    def trace_id(self) -> str:
        return format(self._span.get_span_context().trace_id, "032x")

    @property
    def recording(self) -> bool:
        """False for a span the sampler left out: attributes set on it are dropped, so a
        caller can skip working them out."""
        return bool(self._span.is_recording())

    @property
    def traceparent(self) -> str:
        carrier: dict[str, str] = {}
        ctx = self._api.trace.set_span_in_context(self._span)
        self._api.w3c.inject(carrier, context=ctx)
        return carrier.get("traceparent", "")

    def __enter__(self) -> Span:
        ctx = self._api.trace.set_span_in_context(self._span)
        self._token = self._api.context.attach(ctx)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        try:
            if exc is not None and not self._failed:
                self.fail(_error_code(exc), exc_type.__name__)
            elif not self._failed:
                self._span.set_status(self._api.ok)
        finally:
            self._span.end()
            if self._token is not None:
                self._api.context.detach(self._token)
        return False

    def set(self, key: str, value: Any) -> None:
        if value is not None:
            self._span.set_attribute(key, value)

    def update(self, attributes: Mapping[str, Any]) -> None:
        # One call: the SDK takes its lock once for them all.
        self._span.set_attributes({k: v for k, v in attributes.items() if v is not None})

    def fail(self, code: str, error_type: str | None = None) -> None:
        """Mark the span failed with an error code (never a message)."""
        self._failed = True
        self._span.set_attribute("error.type", error_type or code)
        self._span.set_attribute("automate.error_code", code)
        self._span.set_status(self._api.trace.Status(self._api.trace.StatusCode.ERROR, code))


_KINDS = ("internal", "server", "client", "producer", "consumer")


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: str = "internal",
    parent: str | None = None,
    start_time: int | None = None,
    links: Sequence[str] = (),
) -> Span | _NoSpan:
    """A span for a ``with`` block: child of the current span, or of ``parent`` (a W3C
    ``traceparent``) when given, linked to the spans of ``links`` (traceparents; empty
    ones are left out). :data:`NO_SPAN` when tracing is off."""
    tracer = _tracer()
    if tracer is None:
        return NO_SPAN
    api = _api
    context = context_from(parent) if parent else None
    otel_span = tracer.start_span(
        name,
        context=context,
        kind=api.kinds[kind],
        attributes={k: v for k, v in (attributes or {}).items() if v is not None},
        links=[_link(api, traceparent) for traceparent in links if traceparent] or None,
        start_time=start_time,
        record_exception=False,
        set_status_on_exception=False,
    )
    return Span(api, otel_span)


def _link(api: Any, traceparent: str) -> Any:
    """A link to the span of ``traceparent``."""
    linked = api.trace.get_current_span(context_from(traceparent)).get_span_context()
    return api.trace.Link(linked)


def record(
    name: str,
    attributes: Mapping[str, Any],
    *,
    parent: str,
    start_time: int,
    end_time: int,
) -> None:
    """Record a finished span (times in ns since the epoch) under ``parent``."""
    started = span(name, attributes, parent=parent, start_time=start_time)
    if isinstance(started, Span):
        started._span.set_status(started._api.ok)
        started._span.end(end_time=end_time)


#: Contexts parsed from a traceparent, by its text: an outbox item's is parsed for its
#: claim span and again for its run span. Contexts are immutable, so sharing one is safe.
_contexts: dict[str, Any] = {}
_CONTEXTS_KEPT = 1024


def context_from(traceparent: str | None) -> Any:
    """An OpenTelemetry context whose parent is ``traceparent``; None when off or empty."""
    api = _otel()
    if api is None or not traceparent:
        return None
    found = _contexts.get(traceparent)
    if found is None:
        if len(_contexts) >= _CONTEXTS_KEPT:
            _contexts.clear()
        found = _contexts[traceparent] = api.w3c.extract({"traceparent": traceparent})
    return found


def current_traceparent() -> str:
    """The W3C ``traceparent`` of the current span; "" when tracing is off or no span."""
    if _tracer() is None:
        return ""
    carrier: dict[str, str] = {}
    _api.w3c.inject(carrier)
    return carrier.get("traceparent", "")


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits; None when off or outside a span."""
    if _tracer() is None:
        return None
    ctx = _api.trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current context's propagation headers (W3C ``traceparent`` with the default
    propagators) to ``headers``; nothing when tracing is off."""
    if _tracer() is not None:
        _api.propagate.inject(headers)


def extract_context(carrier: Mapping[str, Any]) -> Any:
    """The context in a carrier's propagation headers; None when tracing is off."""
    if _tracer() is None:
        return None
    return _api.propagate.extract(carrier)


def attach(ctx: Any) -> Any:
    """Make ``ctx`` current; returns the token for :func:`detach` (None when off)."""
    if ctx is None or _otel() is None:
        return None
    return _api.context.attach(ctx)


def detach(token: Any) -> None:
    if token is not None:
        _api.context.detach(token)


def _error_code(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return str(code) if code else type(exc).__name__
