"""The spec checks behind test_contract__specs_are_well_formed, one broken rule at a time."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from automate_connectors.base import ActionSpec, CapabilitySpec, Connector, TriggerSpec
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_testing.context import make_context
from automate_testing.rules import hidden_crash, invalid_inputs, output_problem, spec_problems


def connector(**methods):
    """A connector class whose class methods return the given values."""
    attrs = {"key": methods.pop("key", "demo")}
    for name, value in methods.items():
        attrs[name] = classmethod(lambda cls, value=value: value)
    return type("Demo", (Connector,), attrs)


OBJECT = {"type": "object"}


def test_spec_problems__a_well_formed_connector_has_none():
    cls = connector(
        actions=[ActionSpec(name="a", input_schema=OBJECT)],
        triggers=[TriggerSpec(name="t")],
        capabilities=[CapabilitySpec(name="c", modalities=frozenset({"action", "trigger"}))],
    )
    assert spec_problems(cls) == []


@pytest.mark.parametrize(
    ("methods", "problem"),
    [
        ({"key": ""}, "key must be a non-empty string"),
        ({"config_schema": dict}, "config_schema() must return a pydantic model class"),
        ({"actions": ("not", "a", "list")}, "actions() must return a list, not tuple"),
        ({"actions": [{"name": "a"}]}, "actions() must hold ActionSpec objects"),
        (
            {"triggers": [TriggerSpec(name="t"), TriggerSpec(name="t")]},
            "trigger names must be unique: 't' is declared twice",
        ),
        (
            {"actions": [ActionSpec(name="", input_schema=OBJECT)]},
            "every action needs a non-empty name",
        ),
        (
            {"actions": [ActionSpec(name="a", input_schema={"type": "string"})]},
            "action 'a' input_schema must describe an object",
        ),
        (
            {"actions": [ActionSpec(name="a", input_schema=OBJECT, output_schema={"type": 5})]},
            "action 'a' output_schema is not a valid JSON Schema",
        ),
        (
            {"capabilities": [CapabilitySpec(name="c", modalities=frozenset({"action"}))]},
            "capability 'c' offers actions but none is declared",
        ),
        (
            {"capabilities": [CapabilitySpec(name="c", modalities=frozenset({"trigger"}))]},
            "capability 'c' offers triggers but none is declared",
        ),
    ],
)
def test_spec_problems__names_each_broken_rule(methods, problem):
    problems = spec_problems(connector(**methods))
    assert any(problem in p for p in problems), problems


def test_invalid_inputs__prefers_a_subtle_violation():
    cls = connector(
        actions=[
            ActionSpec(
                name="req",
                input_schema={"type": "object", "required": ["x"], "properties": {}},
            ),
            ActionSpec(
                name="typed", input_schema={**OBJECT, "properties": {"n": {"type": "integer"}}}
            ),
            ActionSpec(name="closed", input_schema={**OBJECT, "additionalProperties": False}),
            ActionSpec(name="open", input_schema=OBJECT),
        ]
    )
    assert dict(invalid_inputs(cls)) == {
        "req": {},
        "typed": {"n": "not-an-integer"},
        "closed": {"contract_test_unexpected": 1},
        "open": ["not", "an", "object"],
    }


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        ([1], "returned list [1], not a dict"),
        ({"x": float("nan")}, "not JSON-serialisable"),
        ({"x": object}, "not JSON-serialisable"),
        ({"id": 5}, "does not match output_schema at $.id"),
    ],
)
def test_output_problem__names_what_is_wrong(result, problem):
    spec = ActionSpec(name="a", output_schema={**OBJECT, "properties": {"id": {"type": "string"}}})
    assert problem in output_problem(spec, result)


def test_output_problem__a_json_object_matching_the_schema_is_fine():
    spec = ActionSpec(name="a", output_schema={**OBJECT, "required": ["id"]})
    assert output_problem(spec, {"id": "1", "extra": [None, 1.5]}) is None


def test_valid_inputs__only_values_the_schema_accepts():
    from hypothesis import given, settings

    from automate_connectors.builtin.http import HttpConnector
    from automate_testing.strategies import valid_inputs

    schema = HttpConnector.get_action("post").input_schema
    validator = Draft202012Validator(schema)

    @settings(max_examples=50, database=None, derandomize=True, deadline=None)
    @given(valid_inputs(schema))
    def check(value):
        assert validator.is_valid(value), value

    check()


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (
            {
                "type": "object",
                "properties": {"t": {"type": "string", "minLength": 1}, "p": {"enum": ["low"]}},
                "required": ["t"],
            },
            {"t": "0"},
        ),
        (
            {
                "type": "object",
                "properties": {"n": {"type": "integer", "minimum": 2.5}},
                "required": ["n"],
                "additionalProperties": False,
            },
            {"n": 3},
        ),
        ({"type": "object", "not": {}}, None),  # nothing is valid
    ],
)
def test_minimal_input__the_simplest_valid_value_or_none(schema, expected):
    from automate_testing.strategies import minimal_input

    assert minimal_input(schema) == expected


class _Demo(Connector):
    key = "demo_crash"

    @classmethod
    def actions(cls):
        return [ActionSpec(name="a", input_schema=OBJECT)]

    def execute_action(self, action, input_data):
        if input_data.get("mode") == "crash":
            return input_data["missing"]
        try:
            return input_data["missing"]
        except KeyError as exc:
            # The connector's own decision, even though it is raised from a KeyError.
            raise AutomateError(ErrorCodes.INVALID_ARGUMENT, "missing is needed") from exc


def test_hidden_crash__tells_a_crash_reported_by_the_base_from_a_deliberate_error():
    connector = _Demo({}, ctx=make_context())
    with pytest.raises(AutomateError) as crashed:
        connector.execute_action("a", {"mode": "crash"})
    assert crashed.value.code == ErrorCodes.INTERNAL
    assert isinstance(hidden_crash(crashed.value), KeyError)
    with pytest.raises(AutomateError) as deliberate:
        connector.execute_action("a", {})
    assert deliberate.value.__cause__ is not None
    assert hidden_crash(deliberate.value) is None
