"""The checks behind the contract tests, kept apart from the test classes.

Each function inspects a connector class (or one outcome of an action) and returns or
raises a message naming the rule that was broken, so a failing contract test reads as a
sentence about the connector, not as a stack of asserts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel

from automate_connectors.base import _guard_action
from automate_connectors.specs import ActionSpec, CapabilitySpec, TriggerSpec
from automate_core.providers.errors import RETRYABLE_BY_DEFAULT, AutomateError, ErrorCodes
from automate_testing.http import MockResponse

if TYPE_CHECKING:
    from automate_connectors.base import Connector
    from automate_testing.http import MockHTTP

__all__ = [
    "SERVICE_FAILURES",
    "ServiceFailure",
    "broken",
    "describe_calls",
    "hidden_crash",
    "input_problem",
    "invalid_inputs",
    "output_problem",
    "replies_were_realistic",
    "sample_exceptions",
    "service_failure_problem",
    "spec_problems",
    "verifying_triggers",
]

#: verification_method values that mean "this trigger's webhooks are not verified".
UNVERIFIED = frozenset({"", "none"})


def broken(connector: str, rule: str, detail: str) -> AssertionError:
    return AssertionError(f"{connector} breaks the connector contract rule '{rule}': {detail}")


def verifying_triggers(cls: type[Connector]) -> list[TriggerSpec]:
    return [t for t in cls.triggers() if t.verification_method.lower() not in UNVERIFIED]


def spec_problems(cls: type[Connector]) -> list[str]:
    """Everything wrong with what ``cls`` declares about itself (empty when nothing)."""
    problems: list[str] = []
    if not isinstance(getattr(cls, "key", None), str) or not cls.key:
        problems.append("key must be a non-empty string")
    schema = cls.config_schema()
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        problems.append(f"config_schema() must return a pydantic model class, not {schema!r}")
    else:
        try:
            json.dumps(schema.model_json_schema())
        except Exception as exc:
            problems.append(f"config_schema() has no JSON Schema: {exc}")
    actions = _declared(cls, "actions", ActionSpec, problems)
    triggers = _declared(cls, "triggers", TriggerSpec, problems)
    capabilities = _declared(cls, "capabilities", CapabilitySpec, problems)
    for kind, specs in (("action", actions), ("trigger", triggers)):
        names = [spec.name for spec in specs]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"{kind} names must be unique: {name!r} is declared twice")
        if any(not name for name in names):
            problems.append(f"every {kind} needs a non-empty name")
    for spec in actions:
        problems.extend(_schema_problems(spec))
    for capability in capabilities:
        if "action" in capability.modalities and not actions:
            problems.append(f"capability {capability.name!r} offers actions but none is declared")
        if "trigger" in capability.modalities and not triggers:
            problems.append(f"capability {capability.name!r} offers triggers but none is declared")
    return problems


def _declared(cls: type[Connector], method: str, kind: type[BaseModel], problems: list[str]):  # type: ignore[no-untyped-def]
    specs = getattr(cls, method)()
    if not isinstance(specs, list):
        problems.append(f"{method}() must return a list, not {type(specs).__name__}")
        return []
    good = []
    for spec in specs:
        if not isinstance(spec, kind):
            problems.append(f"{method}() must hold {kind.__name__} objects, not {spec!r}")
            continue
        try:
            json.loads(spec.model_dump_json())
        except Exception as exc:
            problems.append(f"{kind.__name__} {getattr(spec, 'name', '?')!r} is not JSON: {exc}")
            continue
        good.append(spec)
    return good


def _schema_problems(spec: ActionSpec) -> list[str]:
    problems = []
    for label, schema in (
        ("input_schema", spec.input_schema),
        ("output_schema", spec.output_schema),
    ):
        if schema is None:
            continue
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            problems.append(
                f"action {spec.name!r} {label} is not a valid JSON Schema: {exc.message}"
            )
            continue
    if spec.input_schema.get("type") != "object":
        problems.append(
            f'action {spec.name!r} input_schema must describe an object ("type": "object")'
        )
    return problems


def input_problem(cls: type[Connector], action: str, data: Any) -> str | None:
    """Why ``data`` is not a valid input of ``action`` (``None`` when it is)."""
    spec = next((s for s in cls.actions() if s.name == action), None)
    if spec is None:
        return f"{action!r} is not an action of {cls.__name__}"
    try:
        error = next(iter(Draft202012Validator(spec.input_schema).iter_errors(data)), None)
    except SchemaError as exc:
        return f"the input_schema is invalid: {exc.message}"
    return None if error is None else f"at {error.json_path}: {error.message}"


def output_problem(spec: ActionSpec, result: Any) -> str | None:
    """Why ``result`` is not an acceptable action result (``None`` when it is)."""
    if not isinstance(result, dict):
        return f"returned {type(result).__name__} {result!r}, not a dict"
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"returned a dict that is not JSON-serialisable ({exc}): {result!r}"
    if spec.output_schema is not None:
        error = next(iter(Draft202012Validator(spec.output_schema).iter_errors(result)), None)
        if error is not None:
            return (
                f"result {result!r} does not match output_schema at {error.json_path}: "
                f"{error.message}"
            )
    return None


_WRONG_VALUES = {
    "string": 12345,
    "integer": "not-an-integer",
    "number": "not-a-number",
    "boolean": "not-a-boolean",
    "object": "not-an-object",
    "array": "not-an-array",
    "null": "not-null",
}


def invalid_inputs(cls: type[Connector]) -> list[tuple[str, Any]]:
    """One input per action that its schema rejects, preferring the subtle ones."""
    cases = []
    for spec in cls.actions():
        schema = spec.input_schema
        candidates: list[Any] = []
        if schema.get("required"):
            candidates.append({})
        for name, sub in (schema.get("properties") or {}).items():
            kind = sub.get("type") if isinstance(sub, dict) else None
            wrong = _WRONG_VALUES.get(kind) if isinstance(kind, str) else None
            if wrong is not None:
                candidates.append({name: wrong})
        if schema.get("additionalProperties") is False:
            candidates.append({"contract_test_unexpected": 1})
        candidates.append(["not", "an", "object"])
        for candidate in candidates:
            if input_problem(cls, spec.name, candidate) is not None:
                cases.append((spec.name, candidate))
                break
    return cases


def sample_exceptions() -> list[Exception]:
    """Exceptions a connector's client code meets; normalize_error must map each one."""
    import httpx
    import requests

    request = httpx.Request("POST", "https://contract.test/resource")
    failed = requests.Response()
    failed.status_code = 404
    return [
        RuntimeError("contract-test failure"),
        ValueError("contract-test bad value"),
        KeyError("key"),
        httpx.HTTPStatusError(
            "server error", request=request, response=httpx.Response(500, request=request)
        ),
        httpx.HTTPStatusError(
            "rate limited", request=request, response=httpx.Response(429, request=request)
        ),
        httpx.ConnectTimeout("timed out", request=request),
        httpx.ConnectError("refused", request=request),
        requests.HTTPError("not found", response=failed),
        requests.ConnectionError("refused"),
    ]


def describe_calls(mock: MockHTTP) -> str:
    """The requests ``mock`` saw, as ``METHOD URL`` (``none`` when there were none)."""
    return ", ".join(f"{c.method} {c.url}" for c in mock.calls) or "none"


def check_fuzz_error(
    connector: Connector,
    action: str,
    input_data: Any,
    valid: bool,
    exc: AutomateError,
    mock: MockHTTP,
) -> None:
    """The AutomateError from a fuzzed call is the right one."""
    name = type(connector).__name__
    call = f"{action}({input_data!r})"
    if not valid:
        rule = "an input violating the action's schema raises INVALID_ARGUMENT before any HTTP"
        if exc.code != ErrorCodes.INVALID_ARGUMENT:
            raise broken(name, rule, f"{call} raised {exc!r}")
        if mock.calls:
            raise broken(name, rule, f"{call} made HTTP requests first: {describe_calls(mock)}")
    if exc.provider != connector.key:
        raise broken(
            name,
            "errors carry the connector key",
            f"{call} raised {exc!r} with provider={exc.provider!r}, expected {connector.key!r}",
        )


def check_fuzz_result(
    connector: Connector, action: str, input_data: Any, valid: bool, result: Any
) -> None:
    """A fuzzed call that returned: only valid inputs may, and only with a JSON object."""
    name = type(connector).__name__
    call = f"{action}({input_data!r})"
    if not valid:
        raise broken(
            name,
            "an input violating the action's schema raises INVALID_ARGUMENT before any HTTP",
            f"{call} returned {result!r}",
        )
    problem = output_problem(ActionSpec(name=action), result)
    if problem:
        raise broken(
            name,
            "execute_action returns a JSON object or raises AutomateError",
            f"{call} {problem}",
        )


# -- Crashes hidden by the base class --------------------------------------------------

#: Bugs in a connector's own code, whatever its normalize_error makes of them.
PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (
    LookupError,
    TypeError,
    AttributeError,
    NameError,
    ArithmeticError,
    RecursionError,
)


def _guard_code() -> Any:
    return _guard_action(lambda self, action, input_data: None).__code__


_GUARD_CODE = _guard_code()


def hidden_crash(exc: AutomateError) -> BaseException | None:
    """The exception of the connector's own code that the base class turned into ``exc``.

    ``Connector.execute_action`` passes whatever escapes a subclass through
    ``normalize_error``, so a ``KeyError`` reaches the caller as an INTERNAL
    AutomateError. That is a crash, unlike an AutomateError the connector raised itself
    (even ``from`` a KeyError) or a client error its ``normalize_error`` recognised
    (an INTERNAL code means it did not). ``None`` when ``exc`` is no such crash.
    """
    cause = exc.__cause__
    if cause is None or isinstance(cause, AutomateError):
        return None
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None or tb.tb_frame.f_code is not _GUARD_CODE:
        return None  # raised by the connector itself, not by the base's wrapper
    if exc.code == ErrorCodes.INTERNAL or isinstance(cause, PROGRAMMING_ERRORS):
        return cause
    return None


def replies_were_realistic(mock: MockHTTP) -> bool:
    """True when no request was made, or each was answered 2xx by a declared sample.

    A crash after a made-up reply (the kit's ``{}`` for a route no sample declares) may
    be the reply's fault; after none, or after the connector's own samples, it is not.
    """
    return all(
        call.route is not None and call.status is not None and call.status < 400
        for call in mock.calls
    )


# -- Service failures ------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceFailure:
    """A way the service fails and the AutomateError a connector must turn it into."""

    label: str
    status: int | None  # None: the request times out
    codes: frozenset[ErrorCodes]
    retryable: bool
    #: How a failure message names the expected codes (default: the codes).
    expected: str = ""

    def reply(self) -> MockResponse:
        if self.status is None:
            return MockResponse(timeout=True)
        body = {"error": "contract_test_failure", "message": f"the service failed: {self.label}"}
        return MockResponse(json=body, status=self.status)


_NOT_RETRYABLE_4XX = frozenset(ErrorCodes) - RETRYABLE_BY_DEFAULT - {ErrorCodes.INTERNAL}
_AUTH = frozenset({ErrorCodes.UNAUTHENTICATED, ErrorCodes.PERMISSION_DENIED})
_SERVER = frozenset({ErrorCodes.UNAVAILABLE, ErrorCodes.TIMEOUT, ErrorCodes.RATE_LIMITED})

SERVICE_FAILURES: tuple[ServiceFailure, ...] = (
    ServiceFailure(
        "HTTP 400",
        400,
        _NOT_RETRYABLE_4XX,
        retryable=False,
        expected="a code that is neither internal nor retryable (invalid_argument...)",
    ),
    ServiceFailure("HTTP 401", 401, _AUTH, retryable=False),
    ServiceFailure("HTTP 403", 403, _AUTH, retryable=False),
    ServiceFailure("HTTP 404", 404, frozenset({ErrorCodes.NOT_FOUND}), retryable=False),
    ServiceFailure("HTTP 429", 429, frozenset({ErrorCodes.RATE_LIMITED}), retryable=True),
    ServiceFailure("HTTP 500", 500, _SERVER, retryable=True),
    ServiceFailure("HTTP 502", 502, _SERVER, retryable=True),
    ServiceFailure("HTTP 503", 503, _SERVER, retryable=True),
    ServiceFailure(
        "a timeout",
        None,
        frozenset({ErrorCodes.TIMEOUT, ErrorCodes.UNAVAILABLE}),
        retryable=True,
    ),
)

SERVICE_FAILURE_RULE = (
    "a failing service (4xx, 5xx, timeout) raises an AutomateError with the right code "
    "and retryable, never returns"
)


def service_failure_problem(
    connector: Connector, call: str, failure: ServiceFailure, outcome: Any
) -> str | None:
    """What is wrong with ``outcome`` (a result or the exception raised) for ``failure``."""
    if not isinstance(outcome, BaseException):
        return (
            f"{call} returned {outcome!r} when the service answered {failure.label}: the "
            "error came back as a success (is the HTTP status checked? is every exception "
            "caught and turned into a result?)"
        )
    if not isinstance(outcome, AutomateError):
        return f"{call} raised {type(outcome).__name__}: {outcome} on {failure.label}"
    codes = failure.expected or " or ".join(sorted(code.value for code in failure.codes))
    if outcome.code not in failure.codes or outcome.retryable is not failure.retryable:
        crash = hidden_crash(outcome)
        cause = f" (from {type(crash).__name__}: {crash})" if crash is not None else ""
        return (
            f"{call} raised {outcome!r}{cause} when the service answered {failure.label}; "
            f"expected code {codes} with retryable={failure.retryable}"
        )
    if outcome.provider != connector.key:
        return f"{call} raised {outcome!r} with provider={outcome.provider!r}"
    return None
