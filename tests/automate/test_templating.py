"""Step templates: sandbox, native types, strictness, size cap."""

from __future__ import annotations

import pytest
from django.test import override_settings

from automate import templating
from automate_core.providers.errors import AutomateError, ErrorCodes

ESCAPE = "{{ ''.__class__.__mro__ }}"


def context(payload=None):
    return {
        "event": {"payload": payload if payload is not None else {}, "type": "t"},
        "steps": {"first": {"output": {"key": "ABC-1"}}},
        "workflow": {"key": "wf"},
        "trace_id": "trace-1",
    }


def test_templating__payload_value_is_inert_text():
    ctx = context({"query": ESCAPE, "nested": "{{ trace_id }}"})
    assert templating.render_value("{{ event.payload.query }}", ctx) == ESCAPE
    assert templating.render_value("q={{ event.payload.nested }}", ctx) == "q={{ trace_id }}"


@pytest.mark.parametrize(
    "source",
    [
        ESCAPE,
        "{{ event.__class__ }}",
        "{{ event['__class__'] }}",
        "{{ event|attr('__class__') }}",
        "{% for c in ''.__class__.__mro__ %}{{ c }}{% endfor %}",
    ],
)
def test_templating__underscore_access_in_config_is_a_validation_error(source):
    with pytest.raises(AutomateError) as info:
        templating.validate_template(source, where="config.args.query")
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert "config.args.query" in info.value.message
    assert info.value.details["field"] == "config.args.query"


def test_templating__sandbox_blocks_at_render_time_too():
    # validate_template would refuse this; the sandbox is the second wall.
    with pytest.raises(AutomateError) as info:
        templating.render_string("{{ event.payload.__class__ }}", context({"a": 1}))
    assert "sandbox" in info.value.message
    assert info.value.retryable is False


def test_templating__single_expression_keeps_native_type():
    ctx = context({"items": [1, 2], "meta": {"a": {"b": True}}, "n": 5})
    assert templating.render_value("{{ event.payload.meta }}", ctx) == {"a": {"b": True}}
    assert templating.render_value("  {{ event.payload.items }} ", ctx) == [1, 2]
    assert templating.render_value("{{ event.payload.n > 3 }}", ctx) is True
    assert templating.render_value("{{ steps.first.output.key }}", ctx) == "ABC-1"
    # Two expressions, or text around one, render to a string.
    assert templating.render_value("{{ event.payload.n }}{{ event.payload.n }}", ctx) == "55"
    assert templating.render_value("n={{ event.payload.n }}", ctx) == "n=5"


def test_templating__render_value_walks_dicts_and_lists():
    rendered = templating.render_value(
        {"a": ["{{ trace_id }}", 3, None], "b": {"c": "{{ workflow.key }}"}, "d": "plain"},
        context(),
    )
    assert rendered == {"a": ["trace-1", 3, None], "b": {"c": "wf"}, "d": "plain"}


def test_templating__undefined_is_an_error_naming_the_field():
    with pytest.raises(AutomateError) as info:
        templating.render_value({"x": {"y": "{{ event.payload.missing }}"}}, context({}))
    assert info.value.details["field"] == "config.x.y"
    assert "missing" in info.value.message


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("{{ event.payload.", "syntax error"),
        ("{% if %}", "syntax error"),
        ("{{ evnt.payload }}", "unknown name(s) evnt"),
    ],
)
def test_templating__bad_templates_are_rejected_before_saving(source, fragment):
    with pytest.raises(AutomateError) as info:
        templating.validate_value({"input": {"summary": source}})
    assert fragment in info.value.message
    assert info.value.details["field"] == "config.input.summary"


def test_templating__names_set_inside_the_template_are_allowed():
    templating.validate_template(
        "{% set n = event.payload.n %}{% for i in range(n) %}{{ i }}{% endfor %}"
    )


@override_settings(AUTOMATE={"TEMPLATE_MAX_OUTPUT": 50})
def test_templating__output_is_capped():
    with pytest.raises(templating.TemplateLimitExceeded):
        templating.render_string("{% for i in range(1000) %}x{% endfor %}", context())
    with pytest.raises(templating.TemplateLimitExceeded):
        templating.render_string("{{ event.payload }}", context({"big": "y" * 100}))
    assert templating.render_string("{% for i in range(10) %}x{% endfor %}", context()) == "x" * 10


def test_templating__context_cannot_be_mutated():
    ctx = context({"items": [1]})
    with pytest.raises(AutomateError):
        templating.render_string("{{ event.payload['items'].append(2) }}", ctx)
    assert ctx["event"]["payload"]["items"] == [1]
