"""Calling an :class:`~automate_llm.models.LLMProfile`: the whole ``llm`` step, minus the step.

:func:`run_chat` is what a workflow's ``llm`` step does once its messages are rendered:
resolve the profile's provider and secrets, take a slot from the profile's rate limit,
call the provider, validate structured output, and record an
:class:`~automate_llm.models.LLMUsage` row for every call made (failed ones too). The step
executor only renders templates and adapts the result to a step output.

Retries: by default none here - the workflow engine retries a failed step, honouring
``details["retry_after"]``. Code that calls a profile directly can pass a
:class:`~automate_llm.retry.RetryPolicy`. Either way there is exactly one retry layer
(the SDKs' own retries are off).

Structured output: pass ``response_schema`` as a JSON Schema dict or a pydantic model class.
The provider is told (a system message, plus the provider's native JSON mode where it has
one) and the answer is parsed with pydantic's JSON parser and checked against the schema -
by the model class itself, or by a Draft 2020-12 validator for a dict schema (a workflow's
schema is JSON; rebuilding it as a pydantic class would lose keywords pydantic lacks).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ValidationError
from pydantic_core import from_json

from automate_core import secrets
from automate_core.observability import hooks
from automate_core.providers.base import ProviderContext
from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument
from automate_core.redaction import redact
from automate_core.secrets import is_reference
from automate_core.tracing import get_trace_id, new_trace_id
from automate_llm.models import LLMProfile, LLMUsage
from automate_llm.provider_config import config_error, validate_provider_config
from automate_llm.providers._sdk import PURPOSE, STATUS_CODES
from automate_llm.providers.base import BaseLLMProvider, ChatResult
from automate_llm.ratelimit import enforce_rate_limit
from automate_llm.registry import NotRegistered, get_provider
from automate_llm.retry import RetryPolicy, call_with_retry, parse_retry_after

__all__ = ["LLMCall", "build_provider", "run_chat", "validate_provider_config"]

_MAX_ERROR_TEXT = 300


@dataclass(frozen=True)
class LLMCall:
    """What :func:`run_chat` returns: the provider's result, the parsed value, the usage row."""

    result: ChatResult
    parsed: Any
    usage: LLMUsage
    attempts: int

    def as_dict(self) -> dict[str, Any]:
        """The JSON output of an ``llm`` step (later steps read ``steps.<name>.output``)."""
        return {**self.result.as_dict(), "parsed": self.parsed, "usage_id": self.usage.pk}


def build_provider(profile: LLMProfile, ctx: ProviderContext | None = None) -> BaseLLMProvider:
    """An instance of the profile's provider, with its secret references resolved.

    Instances are built as ``cls(config, ctx)`` - positionally, the way the spec's
    ``MyLLMProvider.__init__(self, config: dict, ctx)`` takes them.
    """
    if not profile.enabled:
        raise invalid_argument(
            None, f"LLM profile {profile.key!r} is disabled", profile=profile.key
        )
    try:
        cls = get_provider(profile.provider_key)
    except NotRegistered as exc:
        raise AutomateError(
            ErrorCodes.CONFIGURATION, str(exc), retryable=False, details={"profile": profile.key}
        ) from None
    ctx = ctx or ProviderContext(trace_id=get_trace_id() or new_trace_id())
    raw = dict(profile.config or {})
    host = _service_host(cls, raw)
    for value in raw.values():
        if is_reference(value):
            _check_grant(value, host)
    config = {
        name: ctx.resolve_secret(value) if is_reference(value) else value
        for name, value in raw.items()
    }
    try:
        return cls(config, ctx)
    except ValidationError as exc:
        raise config_error(cls, exc) from None


#: Config fields that say where a provider sends its requests, in the order they are read.
_URL_FIELDS = ("base_url", "endpoint", "url", "host")


def _service_host(cls: type[BaseLLMProvider], config: dict[str, Any]) -> str:
    """The host the profile's credentials go to: its URL field's, else the provider's own."""
    for field in _URL_FIELDS:
        value = config.get(field)
        if isinstance(value, str) and value and not is_reference(value):
            try:
                return str(httpx.URL(value).host)
            except (httpx.InvalidURL, TypeError):
                return ""
    return str(getattr(cls, "default_host", "") or "")


def _check_grant(reference: str, host: str) -> None:
    """A profile's secret goes to the profile's own host (implicit grant) or to the hosts
    ``AUTOMATE["SECRET_GRANTS"]`` names for it (use ``llm``); never a signing secret.

    A provider with no URL field and no ``default_host`` (a project's own provider that
    fixes its endpoint in code) is only held to the signing-secret rule.
    """
    if host:
        secrets.check_grant(reference, use=PURPOSE, host=host, implicit_hosts=[host])
    else:
        secrets.check_not_signing(reference, use=PURPOSE)


def run_chat(
    profile: LLMProfile | str,
    messages: list[dict],
    *,
    response_schema: dict[str, Any] | type[BaseModel] | None = None,
    tools: list[dict] | None = None,
    trace_id: str | None = None,
    retry: RetryPolicy | None = None,
    run_id: int | None = None,
    step_name: str = "",
    sleep: Callable[[float], None] = time.sleep,
    **params: Any,
) -> LLMCall:
    """Call the profile's provider once (or per ``retry``) and record the usage.

    ``params`` go to the provider (``model``, ``max_tokens``, ``temperature``, ``stop``,
    ``timeout`` in seconds for this call - a step passes its own budget).
    Raises :class:`AutomateError`; its ``details["usage_id"]`` names the failed call's row.
    """
    if isinstance(profile, str):
        found = LLMProfile.objects.filter(key=profile).first()
        if found is None:
            raise AutomateError(
                ErrorCodes.NOT_FOUND,
                f"no LLM profile {profile!r}",
                retryable=False,
                details={"profile": profile},
            )
        profile = found
    schema_json, model_class = _schema_parts(response_schema)
    trace = trace_id or get_trace_id() or new_trace_id()
    ctx = ProviderContext(trace_id=trace)
    call_messages = list(messages)
    kwargs = dict(params)
    if tools:
        kwargs["tools"] = tools
    if schema_json is not None:
        kwargs["response_schema"] = schema_json
        call_messages.insert(0, {"role": "system", "content": _schema_instruction(schema_json)})
    attempts = 0
    record = {"run_id": run_id, "step_name": step_name, "trace_id": trace}

    def attempt() -> LLMCall:
        nonlocal attempts
        attempts += 1
        enforce_rate_limit(profile.key, profile.rate_limit)
        provider = build_provider(profile, ctx)
        started = time.monotonic()
        try:
            model = str(kwargs.get("model") or (profile.config or {}).get("model") or "")
            with hooks.llm_call(profile.provider_key, model) as span:
                result = hooks.llm_result(span, provider.complete(call_messages, **kwargs))
        except Exception as exc:
            error = normalize_error(exc, provider=profile.provider_key)
            usage = _record(profile, None, started, error, record)
            error.details["usage_id"] = usage.pk
            raise error from exc
        finally:
            provider.close()
        try:
            parsed = _parse(result.content, schema_json, model_class, profile.provider_key)
        except AutomateError as error:
            usage = _record(profile, result, started, error, record)
            error.details["usage_id"] = usage.pk
            raise
        usage = _record(profile, result, started, None, record)
        return LLMCall(result=result, parsed=parsed, usage=usage, attempts=attempts)

    if retry is None:
        return attempt()
    return call_with_retry(attempt, retry, sleep=sleep)


def normalize_error(exc: BaseException, *, provider: str) -> AutomateError:
    """Any exception from a provider (a client's own code too) as an AutomateError."""
    if isinstance(exc, AutomateError):
        if exc.provider is None:
            exc.provider = provider
        return exc
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        code = STATUS_CODES.get(status) or (
            ErrorCodes.UNAVAILABLE if status >= 500 else ErrorCodes.INVALID_ARGUMENT
        )
        details: dict[str, Any] = {"status": status}
        retry_after = parse_retry_after(getattr(response, "headers", None))
        if retry_after is not None:
            details["retry_after"] = retry_after
        return AutomateError(
            code, f"HTTP {status} from {provider}", provider=provider, details=details
        )
    name = type(exc).__name__
    if isinstance(exc, TimeoutError) or "Timeout" in name:
        return AutomateError(ErrorCodes.TIMEOUT, "the request timed out", provider=provider)
    if isinstance(exc, ConnectionError) or name in {"ConnectionError", "ConnectError"}:
        return AutomateError(
            ErrorCodes.UNAVAILABLE, f"connection failed: {name}", provider=provider
        )
    if isinstance(exc, json.JSONDecodeError) or name == "JSONDecodeError":
        return AutomateError(
            ErrorCodes.UNAVAILABLE,
            "the service answered with malformed JSON",
            provider=provider,
            details={"reason": "malformed_response"},
        )
    return AutomateError(
        ErrorCodes.INTERNAL,
        f"{name}: {redact(str(exc))[:_MAX_ERROR_TEXT]}",
        provider=provider,
        retryable=False,
    )


# -- Helpers ------------------------------------------------------------------------------


def _schema_parts(
    schema: dict[str, Any] | type[BaseModel] | None,
) -> tuple[dict[str, Any] | None, type[BaseModel] | None]:
    if schema is None:
        return None, None
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema(), schema
    if not isinstance(schema, dict):
        raise invalid_argument(
            "response_schema",
            "response_schema must be a JSON Schema object or a pydantic model class",
        )
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise invalid_argument(
            "response_schema", f"response_schema is not a valid JSON Schema: {exc.message}"
        ) from None
    return schema, None


def _schema_instruction(schema: dict[str, Any]) -> str:
    return (
        "Answer with one JSON value and nothing else (no prose, no code fence). "
        "It must validate against this JSON Schema:\n" + json.dumps(schema, sort_keys=True)
    )


def _parse(
    content: str,
    schema: dict[str, Any] | None,
    model_class: type[BaseModel] | None,
    provider: str,
) -> Any:
    """The structured answer, or ``None`` when no schema was asked for.

    A model's answer that does not fit is retryable: another sample may well fit.
    """
    if schema is None:
        return None
    text = _strip_fence(content)
    try:
        if model_class is not None:
            return model_class.model_validate_json(text).model_dump(mode="json")
        value = from_json(text)
    except (ValidationError, ValueError) as exc:
        raise _invalid_output(provider, content, str(exc).splitlines()[0]) from None
    errors = sorted(
        Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.absolute_path)
    )
    if errors:
        raise _invalid_output(provider, content, f"{errors[0].json_path}: {errors[0].message}")
    return value


def _strip_fence(content: str) -> str:
    text = content.strip()
    if text.startswith("```") and text.endswith("```"):
        text = text[3:-3]
        first_line, _, rest = text.partition("\n")
        text = rest if first_line.strip().isalpha() or not first_line.strip() else text
    return text.strip()


def _invalid_output(provider: str, content: str, problem: str) -> AutomateError:
    return AutomateError(
        ErrorCodes.INTERNAL,
        f"the model's answer does not match the response schema: {problem}",
        provider=provider,
        retryable=True,
        details={
            "reason": "structured_output_invalid",
            "content": redact(content)[:_MAX_ERROR_TEXT],
        },
    )


def _record(
    profile: LLMProfile,
    result: ChatResult | None,
    started: float,
    error: AutomateError | None,
    extra: dict[str, Any],
) -> LLMUsage:
    usage = result.usage if result is not None else None
    return LLMUsage.objects.create(
        profile=profile if profile.pk else None,
        profile_key=profile.key,
        provider_key=profile.provider_key,
        model=(result.model if result is not None else "")
        or str((profile.config or {}).get("model", ""))[:200],
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        estimated=usage.estimated if usage else False,
        latency_ms=max(int((time.monotonic() - started) * 1000), 0),
        status=LLMUsage.Status.ERROR if error is not None else LLMUsage.Status.OK,
        error_code=error.code.value if error is not None else "",
        **extra,
    )
