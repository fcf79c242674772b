"""The ``Connector`` base class: what a connector is and what the engine may ask of it.

A connector describes itself with class methods (``config_schema``, ``capabilities``,
``actions``, ``triggers``), performs actions with ``execute_action`` and verifies incoming
webhooks with ``verify_webhook``. The base owns the protocol around them:

* ``execute_action`` is guarded for every subclass: the action must be declared and its
  input must satisfy the action's JSON Schema before the subclass code runs, and whatever
  the subclass raises reaches the caller as an :class:`AutomateError` (through
  ``normalize_error``);
* webhook secrets (several, for rotation) are bound one at a time to ``self.secret`` by
  :meth:`Connector.check_webhook`, and a verifier that raises counts as a failed check;
  :meth:`Connector.webhook_verdict` also says why a request was refused (a reason code
  from :mod:`automate_connectors.verdict`, which the webhook view logs).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

import httpx
from django.core.exceptions import ImproperlyConfigured
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

# Re-exported so client code can import everything from automate_connectors.base, as the
# spec's examples do.
from automate_connectors.specs import ActionSpec, CapabilitySpec, TriggerSpec
from automate_connectors.verdict import Reason, WebhookVerdict, recording
from automate_connectors.webhooks import Headers, WebhookEvent
from automate_core.http import safe_client
from automate_core.providers.base import BaseProvider, ProviderContext
from automate_core.providers.errors import (
    AutomateError,
    ErrorCodes,
    invalid_argument,
    invalid_config,
)
from automate_core.redaction import redact

logger = logging.getLogger("automate.connectors")

# The error statuses the running action's own clients received (see ``http_client``). An
# action that reads an error answer as if it were a success crashes on it (a KeyError on
# a 429 body); the status, not the crash, says what happened and whether to retry.
_error_statuses: ContextVar[list[int] | None] = ContextVar("automate_error_statuses", default=None)


def _note_error_status(response: httpx.Response) -> None:
    seen = _error_statuses.get()
    if seen is not None and response.status_code >= 400:
        seen.append(response.status_code)


ACCEPTED = WebhookVerdict(accepted=True)

__all__ = [
    "ActionSpec",
    "CapabilitySpec",
    "Connector",
    "Headers",
    "TriggerSpec",
    "WebhookEvent",
    "WebhookVerdict",
    "response_body",
    "validate_config",
]


class Connector(BaseProvider):
    """Base class of every connector. Subclass it, set ``key``, and register it."""

    key: ClassVar[str] = ""
    display_name: ClassVar[str] = ""

    #: Header carrying the sender's event id (deduplication) and event type, if any.
    event_id_header: ClassVar[str | None] = None
    event_type_header: ClassVar[str | None] = None
    #: Extra request headers kept on the outbox row (never Authorization or Cookie).
    webhook_headers: ClassVar[tuple[str, ...]] = ()

    # Set by the factory after construction (subclasses may skip super().__init__), so the
    # class-level defaults keep instances valid either way.
    _automate_webhook_secrets: tuple[str, ...] = ()
    _automate_current_secret: str | None = None

    def __init__(self, config: Mapping[str, Any] | None = None, *, ctx: ProviderContext) -> None:
        self.config = dict(config or {})
        self.ctx = ctx
        self.cfg = validate_config(type(self), self.config)

    # -- Description -------------------------------------------------------------------

    @classmethod
    def capabilities(cls) -> list[CapabilitySpec]:
        modalities = set()
        if cls.actions():
            modalities.add("action")
        if cls.triggers():
            modalities.add("trigger")
        return [CapabilitySpec(name="connector", modalities=frozenset(modalities))]

    @classmethod
    def actions(cls) -> list[ActionSpec]:
        return []

    @classmethod
    def triggers(cls) -> list[TriggerSpec]:
        return []

    @classmethod
    def get_action(cls, name: str) -> ActionSpec:
        for spec in cls.actions():
            if spec.name == name:
                return spec
        known = ", ".join(spec.name for spec in cls.actions()) or "none"
        raise invalid_argument(
            None,
            f"{cls.key or cls.__name__} has no action {name!r} (actions: {known})",
            provider=cls.key or None,
            action=name,
        )

    # -- Actions -----------------------------------------------------------------------

    def execute_action(self, action: str, input_data: dict[str, Any]) -> dict[str, Any]:
        """Perform ``action``; subclasses override this. Input is validated before it runs."""
        raise invalid_argument(
            None, f"{self.key} does not implement action {action!r}", provider=self.key
        )

    def normalize_error(self, exc: Exception) -> Exception:
        """Turn an exception from a client library into an :class:`AutomateError`."""
        return normalize_http_error(exc, provider=self.key)

    # -- Webhooks ----------------------------------------------------------------------

    def verify_webhook(self, headers: dict, raw_body: bytes) -> bool:
        """Return True when the request was signed by the sender; False otherwise.

        The base accepts nothing: a connector that receives webhooks must say how it
        verifies them. ``self.secret`` is the webhook secret being tried.
        """
        return False

    def parse_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> WebhookEvent:
        """Read event type, external id and payload from a verified request."""
        payload = _json_or_none(raw_body)
        body = payload if isinstance(payload, dict) else {}
        event_type = (headers.get(self.event_type_header) if self.event_type_header else None) or (
            body.get("type") if isinstance(body.get("type"), str) else ""
        )
        external_id = headers.get(self.event_id_header) if self.event_id_header else None
        if external_id is None and isinstance(body.get("id"), str | int):
            external_id = str(body["id"])
        return WebhookEvent(
            event_type=event_type or "",
            external_id=external_id or None,
            payload=payload,
            raw_body=None if payload is not None else raw_body,
        )

    def webhook_handshake(self, event: WebhookEvent) -> dict[str, Any] | None:
        """A body to answer at once instead of storing the event (e.g. URL challenges)."""
        return None

    def webhook_replay_content(
        self, headers: Mapping[str, str], raw_body: bytes, event: WebhookEvent
    ) -> bytes | None:
        """What the signature of a verified request covers, when it covers no event id.

        The webhook view keeps a digest of it for ``AUTOMATE["WEBHOOK_REPLAY_WINDOW_SECONDS"]``
        and answers a repeat as a duplicate: a signed request replayed with a new (unsigned)
        id header, or with none, is stored once. ``None`` means the event's id is signed,
        so the outbox's id dedupe already stops replays.

        The default suits the common scheme, an HMAC of the body: ``None`` when the id came
        from the (signed) body, the body itself when it came from :attr:`event_id_header`
        or there is none. A connector whose signature also covers a timestamp returns the
        timestamp with the body (two identical bodies sent at different times are then two
        events); one whose signature covers the id header returns ``None``.
        """
        if event.external_id and not self.event_id_header:
            return None
        return raw_body

    @property
    def secrets(self) -> list[str]:
        """Every active webhook secret of this connector's profile, newest first."""
        return list(self._automate_webhook_secrets)

    @property
    def secret(self) -> str:
        """The webhook secret being checked (the newest one outside a check)."""
        bound = self._automate_current_secret
        if bound is not None:
            return bound
        if self.secrets:
            return self.secrets[0]
        raise ImproperlyConfigured(
            f"connector {self.key!r} has no webhook secret: add one to its connection profile "
            f'or to AUTOMATE["CONNECTORS"][{self.key!r}]["secrets"]'
        )

    @contextmanager
    def using_secret(self, secret: str) -> Iterator[None]:
        previous = self._automate_current_secret
        self._automate_current_secret = secret
        try:
            yield
        finally:
            self._automate_current_secret = previous

    def check_webhook(self, headers: dict, raw_body: bytes) -> bool:
        """True when ``verify_webhook`` accepts the request with any active secret.

        Exceptions from the verifier are failed checks: a missing or malformed header is
        the sender's problem, never a server error.
        """
        return self.webhook_verdict(headers, raw_body).accepted

    def webhook_verdict(self, headers: dict, raw_body: bytes) -> WebhookVerdict:
        """Try every active secret, newest first; say why the request was refused, if it was.

        Each attempt's reason comes from :func:`automate_connectors.verdict.refuse` (the
        built-in verifiers call it), else ``verifier_raised`` for an exception, else
        ``rejected``. Across secrets, ``no_secret_matched`` is answered only when every
        secret was compared and none matched; any other reason (the first one) says more,
        since one secret not matching is normal while a key is being rotated.
        """
        candidates: list[str | None] = list(self.secrets) or [None]
        verdicts: list[WebhookVerdict] = []
        for secret in candidates:
            verdict = self._attempt_webhook(secret, headers, raw_body)
            if verdict.accepted:
                return verdict
            verdicts.append(verdict)
        return next((v for v in verdicts if v.reason is not Reason.NO_SECRET_MATCHED), verdicts[0])

    def _attempt_webhook(
        self, secret: str | None, headers: dict, raw_body: bytes
    ) -> WebhookVerdict:
        with recording() as recorder:
            # What using_secret() does, without a generator per request.
            previous = self._automate_current_secret
            if secret is not None:
                self._automate_current_secret = secret
            try:
                ok = self.verify_webhook(headers, raw_body)
            except Exception as exc:
                logger.debug(
                    "%s verifier raised %s: counted as a failed check", self.key, type(exc).__name__
                )
                return WebhookVerdict(False, Reason.VERIFIER_RAISED, type(exc).__name__)
            finally:
                self._automate_current_secret = previous
        if ok is True:
            return ACCEPTED
        return WebhookVerdict(False, recorder.reason or Reason.REJECTED, recorder.exception)

    # -- HTTP ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The service's base URL from the config (``base_url`` or ``url``)."""
        for source in (getattr(self, "cfg", None), getattr(self, "config", None)):
            for name in ("base_url", "url"):
                value = (
                    source.get(name) if isinstance(source, Mapping) else getattr(source, name, None)
                )
                if isinstance(value, str) and value:
                    return value
        return ""

    def http_client(self, *, timeout: float = 30.0) -> httpx.Client:
        """A new SSRF-safe ``httpx.Client`` for the service, rooted at :attr:`base_url`.

        Relative request paths join the base URL (``client.post("/tickets", ...)``);
        private, loopback and metadata addresses are refused as for every outbound call.
        Close it (``with self.http_client() as client:``) or keep one per connector.
        """
        client = safe_client(base_url=self.base_url, timeout=timeout, purpose="connection")
        client.event_hooks["response"].append(_note_error_status)
        return client

    def _create_client(self) -> httpx.Client:
        """The former name of :meth:`http_client`, kept for connectors that call it."""
        return self.http_client()

    # -- Plumbing --------------------------------------------------------------------

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        impl = cls.__dict__.get("execute_action")
        if impl is not None and not getattr(impl, "_automate_guarded", False):
            cls.execute_action = _guard_action(impl)  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} key={self.key!r}>"


def _guard_action(impl: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(impl)
    def execute_action(self: Connector, action: str, input_data: dict[str, Any]) -> Any:
        spec = type(self).get_action(action)
        validate_action_input(type(self), spec, input_data)
        statuses: list[int] = []
        token = _error_statuses.set(statuses)
        try:
            return impl(self, action, input_data)
        except AutomateError as exc:
            if exc.provider is None:
                exc.provider = self.key
            raise
        except Exception as exc:
            normalized = self.normalize_error(exc)
            if not isinstance(normalized, AutomateError):
                normalized = AutomateError(ErrorCodes.INTERNAL, str(normalized), provider=self.key)
            if normalized.code == ErrorCodes.INTERNAL:
                normalized = _refine_internal(normalized, exc, statuses, provider=self.key)
            raise normalized from exc
        finally:
            _error_statuses.reset(token)

    execute_action._automate_guarded = True  # type: ignore[attr-defined]
    return execute_action


def _refine_internal(
    error: AutomateError, exc: Exception, statuses: list[int], *, provider: str
) -> AutomateError:
    """INTERNAL means "nothing better is known"; say what the base knows instead.

    A timeout or refused connection, or an error answer the action then crashed on, tells
    the engine whether to retry; a connector whose ``normalize_error`` calls everything
    INTERNAL (as the spec's sketch does) would otherwise never retry a 503.
    """
    known = normalize_http_error(exc, provider=provider)
    if known.code != ErrorCodes.INTERNAL:
        return known
    if statuses:
        return status_error(statuses[-1], provider=provider, after=exc)
    return error


@functools.lru_cache(maxsize=1024)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


def validate_action_input(cls: type[Connector], spec: ActionSpec, input_data: Any) -> None:
    """Raise INVALID_ARGUMENT, naming the failing path, unless the input fits the schema."""
    validator = _validator(json.dumps(spec.input_schema, sort_keys=True))
    errors = sorted(validator.iter_errors(input_data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        path = first.json_path
        raise invalid_argument(
            None,
            f"invalid input for {cls.key}.{spec.name} at {path}: {first.message}",
            provider=cls.key or None,
            action=spec.name,
            path=path,
            errors=len(errors),
        )


def validate_config(cls: type[BaseProvider], config: Mapping[str, Any]) -> BaseModel:
    """Validate ``config`` with ``cls.config_schema()``; INVALID_ARGUMENT names the fields.

    Inside :func:`validated` the model already made for the same class and an equal
    config is returned instead of validating it again.
    """
    known = VALIDATED.get()
    if known is not None:
        for klass, seen, model in known:
            if klass is cls and seen == config:
                return model
    schema = cls.config_schema()
    try:
        model = schema.model_validate(dict(config))
    except ValidationError as exc:
        raise invalid_config(exc, cls.key or cls.__name__, provider=cls.key or None) from None
    made = _recording.get()
    if made is not None:
        made.append((cls, dict(config), model))
    return model


#: The (class, config, model) of validations already made: see :func:`validated` (which
#: sets it for a block; a caller on a hot path may set and reset it itself).
VALIDATED: ContextVar[tuple[tuple[type, dict[str, Any], BaseModel], ...] | None] = ContextVar(
    "automate_validated_configs", default=None
)


class validated:  # used as a function: ``with validated(known):``
    """Within the block, :func:`validate_config` answers from ``known`` (what
    :func:`recorded_validations` gave) for the same class and an equal config.

    The webhook view builds a connector per request from a config it validated once per
    cached connection: the instance is made by its own ``__init__``, only pydantic's
    validation of the same config again is skipped (the model is shared by the instances
    of that connection, as the config it was made from is).
    """

    __slots__ = ("known", "token")

    def __init__(self, known: tuple[tuple[type, dict[str, Any], BaseModel], ...]) -> None:
        self.known = known

    def __enter__(self) -> None:
        self.token = VALIDATED.set(self.known)

    def __exit__(self, *exc: object) -> None:
        VALIDATED.reset(self.token)


def recorded_validations(
    build: Callable[[], Any],
) -> tuple[Any, tuple[tuple[type, dict[str, Any], BaseModel], ...]]:
    """``build()``'s result, with the validations :func:`validate_config` made during it."""
    made: list[tuple[type, dict[str, Any], BaseModel]] = []
    token = _recording.set(made)
    try:
        result = build()
    finally:
        _recording.reset(token)
    return result, tuple(made)


_recording: ContextVar[list[tuple[type, dict[str, Any], BaseModel]] | None] = ContextVar(
    "automate_recording_validations", default=None
)


def normalize_http_error(exc: Exception, *, provider: str | None) -> AutomateError:
    """Map transport and HTTP status errors (httpx and requests) to error codes."""
    if isinstance(exc, AutomateError):
        return exc
    status = _status_of(exc)
    if status is not None:
        return status_error(status, provider=provider)
    if isinstance(exc, httpx.TimeoutException | TimeoutError) or type(exc).__name__ in {
        "Timeout",
        "ReadTimeout",
        "ConnectTimeout",
    }:
        return AutomateError(ErrorCodes.TIMEOUT, f"timed out: {exc}", provider=provider)
    if isinstance(exc, httpx.TransportError | ConnectionError) or type(exc).__name__ in {
        "ConnectionError",
    }:
        return AutomateError(ErrorCodes.UNAVAILABLE, f"connection failed: {exc}", provider=provider)
    return AutomateError(ErrorCodes.INTERNAL, f"{type(exc).__name__}: {exc}", provider=provider)


def status_error(
    status: int, *, provider: str | None, after: Exception | None = None
) -> AutomateError:
    """The error an HTTP error status means: 429 and 5xx are retryable, 4xx are not.

    ``after`` names the exception an action raised while reading that answer.
    """
    code = _STATUS_CODES.get(status) or (
        ErrorCodes.UNAVAILABLE if status >= 500 else ErrorCodes.INVALID_ARGUMENT
    )
    message = f"HTTP {status} from {provider or 'service'}"
    if after is not None:
        message += f" (the action then raised {type(after).__name__} reading the answer)"
    return AutomateError(code, message, provider=provider)


_STATUS_CODES = {
    400: ErrorCodes.INVALID_ARGUMENT,
    401: ErrorCodes.UNAUTHENTICATED,
    403: ErrorCodes.PERMISSION_DENIED,
    404: ErrorCodes.NOT_FOUND,
    408: ErrorCodes.TIMEOUT,
    409: ErrorCodes.ALREADY_EXISTS,
    422: ErrorCodes.INVALID_ARGUMENT,
    429: ErrorCodes.RATE_LIMITED,
}


def response_body(response: httpx.Response, *, max_text: int | None = None) -> dict[str, Any]:
    """An answer's body as output: ``{"json": value}`` or ``{"text": str}``.

    The body is parsed when the content type says JSON and it parses; otherwise it is kept
    as text, cut to ``max_text`` characters with ``"truncated": True`` when longer.
    """
    if "json" in response.headers.get("content-type", "") and response.content:
        try:
            return {"json": response.json()}
        except ValueError:
            pass  # a service that labels HTML as JSON: keep what it said, as text
    # Redacted before any cut: a secret cut in two would leave its prefix unmasked.
    text = redact(response.text)
    if max_text is None or len(text) <= max_text:
        return {"text": text}
    return {"text": text[:max_text], "truncated": True}


def _status_of(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _json_or_none(raw_body: bytes) -> Any:
    try:
        return json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        return None
