"""run_chat: profiles, secrets, structured output, rate limits, retries and usage rows."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from pydantic import BaseModel

from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_core.tracing import trace
from automate_llm.calls import build_provider, run_chat
from automate_llm.models import LLMProfile, LLMUsage
from automate_llm.retry import RetryPolicy
from tests.llm.conftest import require_sdk
from tests.llm.servers import CHAT_COMPLETION, Reply

pytestmark = pytest.mark.django_db

AUTOMATE = {
    "SECRETS": {"my-llm-key": "resolved-key-value", "openai-key": "sk-resolved-openai"},
    "RATE_LIMIT_STORAGE": "memory://",
    # The scripted servers are on 127.0.0.1 (see conftest.llm_may_reach_loopback).
    "HTTP_ALLOW_FOR": {"llm": {"networks": ["127.0.0.1/32"]}},
    "HTTP_ALLOWED_PORTS": "*",
}
USER = [{"role": "user", "content": "Summarise: the build is green"}]


def offline(key="demo", **config):
    return LLMProfile.objects.create(key=key, provider_key="offline", config=config)


def test_run_chat__offline_profile_answers_and_records_usage():
    profile = offline()
    call = run_chat(profile, USER, trace_id="t-123", run_id=7, step_name="summarise")
    assert call.result.content == "echo: Summarise: the build is green"
    assert call.parsed is None
    usage = LLMUsage.objects.get()
    assert usage.pk == call.usage.pk
    assert (usage.profile, usage.profile_key, usage.provider_key) == (profile, "demo", "offline")
    assert usage.model == "offline-echo"
    assert usage.input_tokens == call.result.usage.input_tokens > 0
    assert usage.output_tokens == call.result.usage.output_tokens > 0
    assert usage.estimated is True
    assert (usage.status, usage.error_code) == ("ok", "")
    assert (usage.trace_id, usage.run_id, usage.step_name) == ("t-123", 7, "summarise")
    assert call.as_dict()["usage_id"] == usage.pk


def test_run_chat__takes_the_trace_id_of_the_current_trace():
    offline()
    with trace("trace-from-context"):
        run_chat("demo", USER)
    assert LLMUsage.objects.get().trace_id == "trace-from-context"


def test_run_chat__unknown_and_disabled_profiles_are_clear_errors():
    with pytest.raises(AutomateError) as info:
        run_chat("missing", USER)
    assert info.value.code == ErrorCodes.NOT_FOUND
    profile = offline()
    profile.enabled = False
    profile.save()
    with pytest.raises(AutomateError, match="disabled") as info:
        run_chat(profile, USER)
    assert info.value.retryable is False
    assert not LLMUsage.objects.exists()


def test_run_chat__structured_output_with_a_json_schema():
    profile = offline(json_reply={"title": "Green build", "score": 3})
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["title", "score"],
    }
    call = run_chat(profile, USER, response_schema=schema)
    assert call.parsed == {"title": "Green build", "score": 3}
    assert call.as_dict()["parsed"] == {"title": "Green build", "score": 3}


class Summary(BaseModel):
    title: str
    tags: list[str]


def test_run_chat__structured_output_with_a_pydantic_model_built_from_the_schema():
    call = run_chat(offline(), USER, response_schema=Summary)
    # The offline provider builds its answer from the schema it was sent.
    assert call.parsed == {"title": "offline", "tags": ["offline"]}


def test_run_chat__the_schema_instruction_reaches_the_provider(server):
    server.add(Reply(200, {"content": '{"ok": true}'}))
    profile = LLMProfile.objects.create(
        key="mine", provider_key="my_llm", config={"api_key": "k", "endpoint": server.url}
    )
    call = run_chat(profile, USER, response_schema={"type": "object"})
    assert call.parsed == {"ok": True}
    sent = server.requests[0].json()["messages"]
    assert sent[0]["role"] == "system"
    assert "JSON Schema" in sent[0]["content"]
    assert sent[1:] == USER


def test_run_chat__a_model_answer_that_does_not_fit_is_an_error_with_a_usage_row(server):
    server.add(Reply(200, {"content": '{"title": 5}'}), Reply(200, {"content": "no json"}))
    profile = LLMProfile.objects.create(
        key="mine", provider_key="my_llm", config={"api_key": "k", "endpoint": server.url}
    )
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    with pytest.raises(AutomateError) as info:
        run_chat(profile, USER, response_schema=schema)
    assert info.value.retryable is True
    assert info.value.details["reason"] == "structured_output_invalid"
    assert "$.title" in info.value.message
    with pytest.raises(AutomateError) as info2:
        run_chat(profile, USER, response_schema=Summary)
    assert info2.value.details["reason"] == "structured_output_invalid"
    rows = list(LLMUsage.objects.order_by("id"))
    assert [(r.status, r.error_code) for r in rows] == [("error", "internal")] * 2
    assert info.value.details["usage_id"] == rows[0].pk


def test_run_chat__a_fenced_json_answer_is_accepted(server):
    server.add(Reply(200, {"content": '```json\n{"title": "x"}\n```'}))
    profile = LLMProfile.objects.create(
        key="mine", provider_key="my_llm", config={"api_key": "k", "endpoint": server.url}
    )
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    assert run_chat(profile, USER, response_schema=schema).parsed == {"title": "x"}


def test_run_chat__an_invalid_schema_is_refused_before_any_call():
    with pytest.raises(AutomateError, match="not a valid JSON Schema") as info:
        run_chat(offline(), USER, response_schema={"type": "nonsense"})
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert not LLMUsage.objects.exists()


@override_settings(AUTOMATE=AUTOMATE)
def test_run_chat__secret_references_are_resolved_for_the_provider(server):
    server.add(Reply(200, {"content": "ok"}))
    profile = LLMProfile.objects.create(
        key="mine",
        provider_key="my_llm",
        config={"api_key": "secret://my-llm-key", "endpoint": server.url},
    )
    assert run_chat(profile, USER).result.content == "ok"
    assert server.requests[0].headers["authorization"] == "Bearer resolved-key-value"
    assert LLMProfile.objects.get().config["api_key"] == "secret://my-llm-key"


def test_run_chat__a_missing_secret_is_a_configuration_error():
    profile = LLMProfile.objects.create(
        key="oa", provider_key="openai", config={"api_key": "secret://not-there"}
    )
    with pytest.raises(AutomateError) as info:
        run_chat(profile, USER)
    assert info.value.code == ErrorCodes.CONFIGURATION


@override_settings(AUTOMATE=AUTOMATE)
def test_run_chat__openai_429_then_success_with_a_retry_policy_records_both_calls(server):
    require_sdk("openai", "openai")
    # Counts that differ from each other, so the row's input and output cannot be swapped.
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    completion = {**CHAT_COMPLETION, "usage": usage}
    server.add(Reply(429, {"error": {"message": "slow"}}, headers={"Retry-After": "2"}))
    server.add(Reply(200, completion))
    profile = LLMProfile.objects.create(
        key="oa",
        provider_key="openai",
        config={"api_key": "secret://openai-key", "base_url": f"{server.url}/v1"},
    )
    waits: list[float] = []
    call = run_chat(profile, USER, retry=RetryPolicy(max_attempts=3), sleep=waits.append)
    assert call.result.content == "hi"
    assert call.attempts == 2
    assert waits == [2.0]
    rows = list(LLMUsage.objects.order_by("id"))
    assert [(r.status, r.error_code) for r in rows] == [("error", "rate_limited"), ("ok", "")]
    assert (rows[1].input_tokens, rows[1].output_tokens, rows[1].estimated) == (5, 1, False)
    assert server.requests[0].headers["authorization"] == "Bearer sk-resolved-openai"


def test_run_chat__without_a_policy_a_failure_is_raised_after_one_call_and_recorded(server):
    server.add(Reply(503, {"error": "down"}))
    profile = LLMProfile.objects.create(
        key="mine", provider_key="my_llm", config={"api_key": "k", "endpoint": server.url}
    )
    with pytest.raises(AutomateError) as info:
        run_chat(profile, USER)
    # The spec's snippet does not check the status; the body has no "content".
    assert info.value.code == ErrorCodes.INTERNAL
    assert len(server.requests) == 1
    assert LLMUsage.objects.get().status == "error"


def test_run_chat__a_refused_connection_from_a_client_provider_is_unavailable():
    profile = LLMProfile.objects.create(
        key="mine", provider_key="my_llm", config={"api_key": "k", "endpoint": "http://127.0.0.1:9"}
    )
    with pytest.raises(AutomateError) as info:
        run_chat(profile, USER)
    assert info.value.code == ErrorCodes.UNAVAILABLE
    assert info.value.retryable is True


@override_settings(AUTOMATE=AUTOMATE)
def test_run_chat__the_profile_rate_limit_is_enforced():
    from automate_core.throttling import RateLimiter

    RateLimiter("llm:limited", "2/min").reset()  # the memory storage outlives tests
    profile = offline(key="limited")
    profile.rate_limit = "2/min"
    profile.save()
    run_chat(profile, USER)
    run_chat(profile, USER)
    with pytest.raises(AutomateError) as info:
        run_chat(profile, USER)
    assert info.value.code == ErrorCodes.RATE_LIMITED
    assert info.value.retryable is True
    assert info.value.details["retry_after"] > 0
    assert LLMUsage.objects.count() == 2  # the refused call never reached the provider


# -- Profile validation ----------------------------------------------------------------------


def test_profile__api_keys_must_be_secret_references():
    with pytest.raises(ValidationError, match="secret://") as info:
        LLMProfile.objects.create(key="oa", provider_key="openai", config={"api_key": "sk-plain"})
    assert "config" in info.value.message_dict
    assert not LLMProfile.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"provider_key": "nope"}, "provider_key"),
        ({"config": {"api_key": "secret://x", "timeout": -1}}, "config"),
        ({"config": {"api_key": "secret://x", "unknown": 1}}, "config"),
        ({"config": {"api_key": "secret://bad name!"}}, "config"),
        ({"rate_limit": "lots"}, "rate_limit"),
        ({"key": "Bad Key"}, "key"),
    ],
    ids=["unknown-provider", "bad-value", "unknown-field", "bad-reference", "bad-rate", "bad-key"],
)
def test_profile__invalid_rows_are_refused_naming_the_field(fields, field):
    values = {"key": "oa", "provider_key": "openai", "config": {"api_key": "secret://k"}} | fields
    with pytest.raises(ValidationError) as info:
        LLMProfile.objects.create(**values)
    assert field in info.value.message_dict


def test_profile__config_is_validated_by_the_provider_schema_with_references_unresolved():
    profile = LLMProfile.objects.create(
        key="oa", provider_key="openai", config={"api_key": "secret://k"}, rate_limit="10/s"
    )
    assert profile.pk is not None
    assert str(profile) == "oa"


def test_build_provider__passes_config_and_ctx_positionally_as_the_spec_does():
    profile = LLMProfile.objects.create(
        key="mine", provider_key="my_llm", config={"api_key": "k", "endpoint": "http://127.0.0.1:9"}
    )
    provider = build_provider(profile)
    assert provider.cfg.endpoint == "http://127.0.0.1:9"
    assert provider.ctx.trace_id
