"""What the OpenAI and Anthropic providers share: their SDKs have the same shape.

Both official SDKs raise ``APIStatusError`` (with ``status_code`` and ``response``),
``APITimeoutError``, ``APIConnectionError`` and ``APIResponseValidationError`` and take
``max_retries``, ``timeout`` and ``http_client``. :func:`normalize_sdk_error` maps those to
:class:`AutomateError` codes once for both:

==============================  ==================  =========
what happened                   code                retryable
==============================  ==================  =========
429                             RATE_LIMITED        yes (``details["retry_after"]``)
500-599 (incl. 529 overloaded)  UNAVAILABLE         yes
408, client timeout             TIMEOUT             yes
409 (a concurrent request)      UNAVAILABLE         yes
connection refused / reset      UNAVAILABLE         yes
malformed JSON in a response    UNAVAILABLE         yes (gateways answer 200 with HTML)
401                             UNAUTHENTICATED     no
403                             PERMISSION_DENIED   no
404                             NOT_FOUND           no
other 4xx (400, 413, 422)       INVALID_ARGUMENT    no
==============================  ==================  =========

:class:`SDKProvider` owns what a provider built on such an SDK does around each call (the
lazy sync client, a fresh async client per async call, ``close()``, the error mapping); a
provider module only says which SDK and client classes, which call, and how to build the
request and read the answer.

HTTP clients: the kernel's guarded ``httpx2`` client
(:func:`automate_core.sdkclient.guarded_sdk_client`, purpose ``llm``): a ``base_url`` on
a loopback, private or metadata address is refused unless
``AUTOMATE["HTTP_ALLOW_FOR"]["llm"]`` (or a global allow-list) admits it, proxies are never
taken from the environment, answers are capped at ``AUTOMATE["LLM_MAX_RESPONSE_BYTES"]``,
and every call (streams included) runs under a total deadline: the call's ``timeout``,
else the profile's. One shared sync client per provider and timeout, a fresh async client
per call. A project may name its own factory in ``AUTOMATE["LLM_HTTP_CLIENT_FACTORY"]``:
``factory(provider_key, *, asynchronous, timeout) -> client`` (the client class the
installed SDK accepts); it then owns those guarantees.
"""

from __future__ import annotations

import importlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, nullcontext
from types import ModuleType, TracebackType
from typing import Any, ClassVar, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_core.redaction import redact
from automate_llm.conf import settings as llm_settings
from automate_llm.providers.base import BaseLLMProvider, ChatChunk, ChatResult
from automate_llm.retry import parse_retry_after

STATUS_CODES = {
    400: ErrorCodes.INVALID_ARGUMENT,
    401: ErrorCodes.UNAUTHENTICATED,
    403: ErrorCodes.PERMISSION_DENIED,
    404: ErrorCodes.NOT_FOUND,
    408: ErrorCodes.TIMEOUT,
    409: ErrorCodes.UNAVAILABLE,
    413: ErrorCodes.INVALID_ARGUMENT,
    422: ErrorCodes.INVALID_ARGUMENT,
    429: ErrorCodes.RATE_LIMITED,
}
_MAX_MESSAGE = 300

#: The outbound purpose of LLM calls: AUTOMATE["HTTP_ALLOW_FOR"]["llm"] opens networks to them.
PURPOSE = "llm"

_sync_clients: dict[tuple[str, str, float, int], Any] = {}
_clients_lock = threading.Lock()


def import_sdk(name: str, extra: str) -> ModuleType:
    """Import an optional SDK or say which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"the {name!r} package is needed for this LLM provider: "
            f'pip install "django-automate[{extra}]"'
        ) from exc


def http_client(sdk: ModuleType, provider_key: str, *, asynchronous: bool, timeout: float) -> Any:
    """The HTTP client handed to the SDK (see the module docstring)."""
    factory_path = llm_settings.LLM_HTTP_CLIENT_FACTORY
    if factory_path:
        factory = import_string(factory_path) if isinstance(factory_path, str) else factory_path
        return factory(provider_key, asynchronous=asynchronous, timeout=timeout)
    # optional extra: the module needs httpx2, which comes with the openai/anthropic SDKs.
    from automate_core.sdkclient import guarded_sdk_client

    max_size = llm_settings.LLM_MAX_RESPONSE_BYTES
    if asynchronous:
        # An async client belongs to the event loop that first uses it: one per call.
        return guarded_sdk_client(
            asynchronous=True, timeout=timeout, purpose=PURPOSE, max_size=max_size
        )
    # Sync clients are thread-safe; sharing one per provider and timeout keeps connections
    # alive between calls and saves building an SSL context (~0.1 s) for every call.
    cache_key = (sdk.__name__, provider_key, timeout, max_size)
    with _clients_lock:
        client = _sync_clients.get(cache_key)
        if client is None or client.is_closed:
            client = _sync_clients[cache_key] = guarded_sdk_client(
                asynchronous=False, timeout=timeout, purpose=PURPOSE, max_size=max_size
            )
    return client


def total_deadline(seconds: float | None) -> AbstractContextManager[None]:
    """The total deadline of one call (see :func:`automate_core.sdkclient.deadline`).

    Only our guarded client honours it; a project's own ``LLM_HTTP_CLIENT_FACTORY`` client
    keeps its own timeouts.
    """
    if not seconds or llm_settings.LLM_HTTP_CLIENT_FACTORY:
        return nullcontext()
    # optional extra: the module needs httpx2, which comes with the openai/anthropic SDKs.
    from automate_core.sdkclient import deadline

    return deadline(float(seconds))


def owns_http_client() -> bool:
    """False when the sync HTTP client is shared (the provider must not close it)."""
    return bool(llm_settings.LLM_HTTP_CLIENT_FACTORY)


def normalize_sdk_error(exc: BaseException, sdk: ModuleType, provider: str) -> AutomateError:
    """Map an exception raised by an official SDK call to an :class:`AutomateError`."""
    if isinstance(exc, AutomateError):
        return exc
    ours = _our_cause(exc)
    if ours is not None:  # an SSRF refusal or a capped body, wrapped by the SDK
        return ours
    if isinstance(exc, sdk.APITimeoutError):
        return AutomateError(ErrorCodes.TIMEOUT, "the request timed out", provider=provider)
    if isinstance(exc, sdk.APIResponseValidationError | json.JSONDecodeError):
        return _malformed(provider, exc)
    if isinstance(exc, sdk.APIStatusError):
        return _status_error(exc, provider)
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc
        if "timeout" in type(cause).__name__.lower():
            return AutomateError(ErrorCodes.TIMEOUT, "the request timed out", provider=provider)
        return AutomateError(
            ErrorCodes.UNAVAILABLE,
            f"connection failed: {redact(str(cause))[:_MAX_MESSAGE]}",
            provider=provider,
        )
    name = type(exc).__name__
    if "Timeout" in name:
        return AutomateError(ErrorCodes.TIMEOUT, "the request timed out", provider=provider)
    if name in {"RemoteProtocolError", "ReadError", "ConnectError", "NetworkError"}:
        return AutomateError(
            ErrorCodes.UNAVAILABLE, f"connection failed: {name}", provider=provider
        )
    return AutomateError(
        ErrorCodes.INTERNAL, f"{name}: {redact(str(exc))[:_MAX_MESSAGE]}", provider=provider
    )


def _our_cause(exc: BaseException) -> AutomateError | None:
    """The AutomateError (raised by our transport) an SDK error wraps, if any."""
    seen: set[int] = set()
    current = exc.__cause__ or exc.__context__
    while current is not None and id(current) not in seen:
        if isinstance(current, AutomateError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def malformed_response(provider: str, what: object) -> AutomateError:
    """The SDK parsed nothing usable (e.g. a gateway's HTML page with status 200)."""
    return _malformed(provider, TypeError(type(what).__name__))


def _malformed(provider: str, exc: BaseException) -> AutomateError:
    return AutomateError(
        ErrorCodes.UNAVAILABLE,
        "the service answered with malformed JSON",
        provider=provider,
        retryable=True,
        details={"reason": "malformed_response", "error": type(exc).__name__},
    )


def _status_error(exc: Any, provider: str) -> AutomateError:
    status = int(exc.status_code)
    response = getattr(exc, "response", None)
    headers = dict(response.headers) if response is not None else {}
    code = STATUS_CODES.get(status) or (
        ErrorCodes.UNAVAILABLE if status >= 500 else ErrorCodes.INVALID_ARGUMENT
    )
    details: dict[str, Any] = {"status": status}
    retry_after = parse_retry_after(headers)
    if retry_after is not None:
        details["retry_after"] = retry_after
    request_id = headers.get("x-request-id") or headers.get("request-id")
    if request_id:
        details["request_id"] = request_id
    detail = _error_text(getattr(exc, "body", None)) or str(getattr(exc, "message", ""))
    message = f"HTTP {status} from {provider}"
    if detail:
        message += f": {redact(detail)[:_MAX_MESSAGE]}"
    return AutomateError(code, message, provider=provider, details=details)


def _error_text(body: Any) -> str:
    """The service's own error message from the usual ``{"error": {"message": ...}}``."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
    return ""


class SDKConfig(Protocol):
    """The configuration fields every SDK provider has (its pydantic model has more)."""

    api_key: str
    base_url: str | None
    timeout: float


class StreamReader(Protocol):
    """Turns one SDK stream event into a chunk, or ``None`` for an event with nothing new."""

    def feed(self, event: Any) -> ChatChunk | None: ...


class SDKErrorGuard:
    """Re-raises whatever an SDK call raises as the :class:`AutomateError` it means.

    The SDK is imported when the guard is made, so a missing SDK is reported as
    ``ImproperlyConfigured`` before the request is even built. Our own errors and
    non-``Exception`` exits (``GeneratorExit`` when a stream is closed early) pass through.
    """

    def __init__(self, sdk: ModuleType, provider: str) -> None:
        self.sdk = sdk
        self.provider = provider

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, AutomateError):
            raise normalize_sdk_error(exc, self.sdk, self.provider) from exc


class SDKProvider(BaseLLMProvider, ABC):
    """A chat provider over an official SDK shaped like ``openai``'s and ``anthropic``'s.

    It owns the clients (one lazy sync client, closed by :meth:`close`; a fresh async
    client per async call, because an async client belongs to the event loop that opened
    it), the SDK's retries being off (one retry layer: :mod:`automate_llm.retry`), and the
    error mapping around every call. A subclass names its SDK and client classes and fills
    in the wire format: :meth:`_create`, :meth:`_params`, :meth:`_stream_params`,
    :meth:`_result` and :meth:`_stream_reader`.
    """

    #: The SDK's import name and the django-automate extra that installs it.
    sdk_module: ClassVar[str] = ""
    sdk_extra: ClassVar[str] = ""
    #: The service's own API host (a profile's secrets are implicitly granted to it).
    default_host: ClassVar[str] = ""
    #: The SDK's client class names, e.g. ``"OpenAI"`` and ``"AsyncOpenAI"``.
    sync_client_class: ClassVar[str] = ""
    async_client_class: ClassVar[str] = ""

    #: A pydantic model with (at least) these fields; typing has no "BaseModel and SDKConfig".
    cfg: SDKConfig  # type: ignore[assignment]

    def __init__(self, config: dict, ctx: Any = None) -> None:
        super().__init__(config, ctx)
        self._client: Any = None

    # -- Clients --------------------------------------------------------------------------

    def _sdk(self) -> Any:
        return import_sdk(self.sdk_module, self.sdk_extra)

    def _client_kwargs(self, *, asynchronous: bool) -> dict[str, Any]:
        sdk = self._sdk()
        return {
            "api_key": self.cfg.api_key,
            "base_url": self.cfg.base_url,
            **self._extra_client_kwargs(),
            "timeout": self.cfg.timeout,
            "max_retries": 0,  # one retry layer: ours (automate_llm.retry)
            "http_client": http_client(
                sdk, self.key, asynchronous=asynchronous, timeout=self.cfg.timeout
            ),
        }

    def _extra_client_kwargs(self) -> dict[str, Any]:
        """Client arguments only this SDK takes (OpenAI's ``organization``)."""
        return {}

    @property
    def client(self) -> Any:
        if self._client is None:
            client_class = getattr(self._sdk(), self.sync_client_class)
            self._client = client_class(**self._client_kwargs(asynchronous=False))
        return self._client

    def _async_client(self) -> Any:
        """A new async client, to be used in ``async with`` for one call."""
        client_class = getattr(self._sdk(), self.async_client_class)
        return client_class(**self._client_kwargs(asynchronous=True))

    def close(self) -> None:
        if self._client is not None and owns_http_client():
            self._client.close()
        self._client = None

    def _mapped_errors(self) -> SDKErrorGuard:
        """``with self._mapped_errors():`` around an SDK call maps its failures (see the guard)."""
        return SDKErrorGuard(self._sdk(), self.key)

    # -- Calls ----------------------------------------------------------------------------

    def _deadline(self, kwargs: dict[str, Any]) -> AbstractContextManager[None]:
        """The call's total deadline: its ``timeout`` (a step's budget), else the profile's."""
        return total_deadline(kwargs.get("timeout") or self.cfg.timeout)

    def complete(self, messages: list[dict], **kwargs: Any) -> ChatResult:
        with self._mapped_errors(), self._deadline(kwargs):
            return self._result(self._create(self.client, self._params(messages, kwargs)))

    async def acomplete(self, messages: list[dict], **kwargs: Any) -> ChatResult:
        with self._mapped_errors(), self._deadline(kwargs):
            async with self._async_client() as client:
                return self._result(await self._create(client, self._params(messages, kwargs)))

    def stream(self, messages: list[dict], **kwargs: Any) -> Iterator[ChatChunk]:
        errors = self._mapped_errors()
        params = self._stream_params(messages, kwargs)
        with errors, self._deadline(kwargs):
            reader = self._stream_reader()
            for event in self._create(self.client, params):
                chunk = reader.feed(event)
                if chunk is not None:
                    yield chunk

    async def astream(self, messages: list[dict], **kwargs: Any) -> AsyncIterator[ChatChunk]:
        errors = self._mapped_errors()
        params = self._stream_params(messages, kwargs)
        with errors, self._deadline(kwargs):
            async with self._async_client() as client:
                reader = self._stream_reader()
                async for event in await self._create(client, params):
                    chunk = reader.feed(event)
                    if chunk is not None:
                        yield chunk

    # -- What a subclass fills in ---------------------------------------------------------

    @abstractmethod
    def _create(self, client: Any, params: dict[str, Any]) -> Any:
        """The SDK's chat call on ``client`` (awaitable when the client is async)."""

    @abstractmethod
    def _params(self, messages: list[dict], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The request's arguments for our neutral ``messages`` and call ``kwargs``."""

    def _stream_params(self, messages: list[dict], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The request's arguments for a streamed answer."""
        return {**self._params(messages, kwargs), "stream": True}

    @abstractmethod
    def _result(self, response: Any) -> ChatResult:
        """The SDK's answer as a :class:`ChatResult` (or ``malformed_response``)."""

    @abstractmethod
    def _stream_reader(self) -> StreamReader:
        """A fresh reader for one stream's events."""
