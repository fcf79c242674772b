"""Connectors broken in the ways real ones are: each fails exactly the rule made for it.

``CarefulConnector`` is the control: the same connector written right passes every rule,
and the two rules about failures and crashes run on it (they do not skip).
"""

from __future__ import annotations

import unittest

import pytest

from automate_testing.contracts import CONTRACT_TESTS, ConnectorContractTest
from automate_testing.http import MockResponse
from tests.testing_kit.broken import (
    CarefulConnector,
    OptionalKeyConnector,
    SwallowingConnector,
    UncheckedStatusConnector,
)

SERVICE = "test_contract__service_failures_raise_automate_error"
CRASH = "test_contract__valid_inputs_never_crash"


def contract_for(connector_class, **attrs):
    """A contract class for ``connector_class``, built here so pytest does not collect it."""

    class Contract(ConnectorContractTest):
        def get_config(self):
            return {"url": "https://tickets.example"}

    Contract.connector_class = connector_class
    for name, value in attrs.items():
        setattr(Contract, name, value)
    Contract.__test__ = False
    return Contract


def outcomes(contract):
    """Rule name -> "passed", "skipped" or the failure message."""
    results = {}
    for name in CONTRACT_TESTS:
        try:
            getattr(contract(), name)()
        except unittest.SkipTest:
            results[name] = "skipped"
        except AssertionError as exc:
            results[name] = str(exc)
        else:
            results[name] = "passed"
    return results


def failures(contract):
    return {name: r for name, r in outcomes(contract).items() if r not in ("passed", "skipped")}


def test_careful_connector__passes_every_rule_and_the_new_ones_run():
    results = outcomes(contract_for(CarefulConnector))
    assert {name for name, r in results.items() if r not in ("passed", "skipped")} == set()
    assert results[SERVICE] == results[CRASH] == "passed"
    skipped = {name for name, r in results.items() if r == "skipped"}
    assert skipped == {n for n in CONTRACT_TESTS if "webhook" in n or "sample" in n}


def test_unchecked_status__an_error_body_returned_as_success_is_caught():
    found = failures(contract_for(UncheckedStatusConnector))
    assert set(found) == {SERVICE}, found
    message = found[SERVICE]
    assert message.startswith(
        "UncheckedStatusConnector breaks the connector contract rule 'a failing service "
        "(4xx, 5xx, timeout) raises an AutomateError with the right code and retryable, "
        "never returns'"
    ), message
    assert "create_ticket({'title': '0'}) returned {'error': 'contract_test_failure'" in message
    assert "when the service answered HTTP 400" in message
    assert "is the HTTP status checked?" in message


def test_swallowing__every_exception_turned_into_a_result_is_caught():
    found = failures(contract_for(SwallowingConnector))
    assert set(found) == {SERVICE}, found
    assert "returned {'ok': False} when the service answered HTTP 400" in found[SERVICE]


def test_optional_key__a_key_error_on_an_allowed_input_is_caught():
    found = failures(contract_for(OptionalKeyConnector))
    assert set(found) == {CRASH}, found
    message = found[CRASH]
    assert message.startswith(
        "OptionalKeyConnector breaks the connector contract rule 'an input the action's "
        "schema accepts never crashes the connector'"
    ), message
    # Shrunk to the smallest input without the optional field; no request was made.
    assert "create_ticket({'title': '0'}) crashed with KeyError: 'priority'" in message
    assert "reported as AutomateError(code='internal'" in message
    assert "requests made: none" in message


def test_optional_key__the_sample_input_is_always_tried():
    # Without fuzzing at all, the one declared sample (no "priority") finds the crash.
    contract = contract_for(
        OptionalKeyConnector, fuzz_max_examples=1, sample_inputs={"create_ticket": {"title": "A"}}
    )
    with pytest.raises(AssertionError, match=r"create_ticket\(\{'title': 'A'\}\) crashed"):
        getattr(contract(), CRASH)()


def test_service_failures__each_failure_is_checked_with_its_code_and_retryable():
    class WrongCodes(CarefulConnector):
        key = "wrong_codes"

        def normalize_error(self, exc):
            error = super().normalize_error(exc)
            if error.code == "rate_limited":
                error.retryable = False  # a 429 the engine would never retry
            return error

    found = failures(contract_for(WrongCodes))
    assert set(found) == {SERVICE}, found
    assert (
        "when the service answered HTTP 429; expected code rate_limited with " in (found[SERVICE])
    )
    assert "retryable=True" in found[SERVICE]


def test_service_failures__a_timeout_must_be_retryable():
    class TimeoutIsFatal(CarefulConnector):
        key = "timeout_is_fatal"

        def normalize_error(self, exc):
            error = super().normalize_error(exc)
            if error.code == "timeout":  # a wrong code, not INTERNAL (which the base refines)
                error.code, error.retryable = error.code.INVALID_ARGUMENT, False
            return error

    found = failures(contract_for(TimeoutIsFatal))
    assert set(found) == {SERVICE}, found
    assert (
        "when the service answered a timeout; expected code timeout or unavailable"
        in (found[SERVICE])
    )


def test_valid_inputs__a_crash_after_a_made_up_reply_is_not_blamed_on_the_connector():
    class ReadsTheReply(CarefulConnector):
        key = "reads_the_reply"

        def execute_action(self, action, input_data):
            with self.http_client() as client:
                response = client.post("/tickets", json=input_data)
            response.raise_for_status()
            return {"id": response.json()["id"]}

    # Without samples the kit answers {}: the KeyError may be that reply's fault.
    assert outcomes(contract_for(ReadsTheReply))[CRASH] == "passed"
    # With a declared sample reply that lacks "id", the crash is the connector's.
    contract = contract_for(
        ReadsTheReply,
        sample_responses={"create_ticket": {"POST /tickets": MockResponse(json={"key": "T-1"})}},
    )
    with pytest.raises(AssertionError, match="crashed with KeyError: 'id'"):
        getattr(contract(), CRASH)()
