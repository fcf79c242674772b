"""Step executors and their registry."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from automate.steps import StepContext, StepExecutor, get_step, register_step, step_types
from automate.steps.base import run_with_timeout
from automate.steps.filter import FilterStep
from automate.steps.http_request import HttpRequestStep
from automate.steps.registry import NotRegistered
from automate.steps.registry import steps as step_registry
from automate_core.providers.base import ProviderContext
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_core.registry import AlreadyRegistered


def ctx(timeout=5.0):
    return StepContext(
        step_name="s", attempt=1, trace_id="t", timeout=timeout, provider_ctx=ProviderContext()
    )


def test_registry__builtins_are_registered():
    assert {"connector_action", "http_request", "filter"} <= set(step_types())
    assert get_step("filter") is FilterStep
    with pytest.raises(NotRegistered, match="registered: "):
        get_step("nope")


def test_registry__checks_the_shape_and_refuses_a_taken_key():
    class NoModel(StepExecutor):
        key = "no_model"

        def execute(self, config, ctx):
            return None

    class NoExecute(StepExecutor):
        key = "no_execute"
        config_model = BaseModel

    class OtherFilter(StepExecutor):
        key = "http_request"
        config_model = BaseModel

        def execute(self, config, ctx):
            return None

    with pytest.raises(TypeError, match="config_model"):
        register_step(NoModel)
    with pytest.raises(TypeError, match="execute"):
        register_step(NoExecute)
    # A project may replace a built-in once, but not take a key a project class holds.
    register_step(OtherFilter)
    try:
        assert get_step("http_request") is OtherFilter

        class Third(OtherFilter):
            pass

        with pytest.raises(AlreadyRegistered):
            register_step(Third)
    finally:
        step_registry.unregister("http_request")
        step_registry.register(HttpRequestStep, builtin=True)


@pytest.mark.parametrize("value", ["true", 1, None, "yes"])
def test_filter__condition_must_render_to_a_boolean(value):
    config = FilterStep.parse_config({"condition": value})
    with pytest.raises(AutomateError) as info:
        FilterStep().execute(config, ctx())
    assert info.value.details["field"] == "config.condition"
    assert info.value.retryable is False


def test_filter__true_passes_false_stops():
    assert FilterStep().execute(FilterStep.parse_config({"condition": True}), ctx()).stop is False
    result = FilterStep().execute(FilterStep.parse_config({"condition": False}), ctx())
    assert (result.stop, result.output) == (True, {"passed": False})


@pytest.mark.parametrize(
    ("config", "idempotent"),
    [
        ({"url": "http://x"}, True),
        ({"url": "http://x", "method": "POST"}, False),
        ({"url": "http://x", "method": "POST", "idempotent": True}, True),
        ({"url": "http://x", "method": "DELETE"}, True),
    ],
)
def test_http_request__idempotency_follows_the_method(config, idempotent):
    assert HttpRequestStep.is_idempotent(HttpRequestStep.parse_config(config)) is idempotent


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "config.url"),
        ({"url": "http://x", "method": "FETCH"}, "config.method"),
        ({"url": "http://x", "max_size": 0}, "config.max_size"),
        ({"url": "http://x", "verify": False}, "config.verify"),
    ],
)
def test_http_request__bad_config_names_the_field(config, field):
    with pytest.raises(AutomateError) as info:
        HttpRequestStep.parse_config(config)
    assert info.value.details["field"] == field


def test_http_request__json_and_data_are_exclusive():
    config = HttpRequestStep.parse_config({"url": "http://x", "json": {}, "data": {}})
    with pytest.raises(AutomateError, match="json or data"):
        HttpRequestStep.check(config)


def test_run_with_timeout__returns_raises_or_times_out():
    assert run_with_timeout(lambda: 42, 5, what="x") == 42
    with pytest.raises(ZeroDivisionError):
        run_with_timeout(lambda: 1 / 0, 5, what="x")
    gate = __import__("threading").Event()
    with pytest.raises(AutomateError) as info:
        run_with_timeout(lambda: gate.wait(5), 0.01, what="slow call")
    gate.set()
    assert info.value.code == ErrorCodes.TIMEOUT
    assert "slow call" in info.value.message
