"""Every inherited contract test fails on a broken connector, naming the broken rule."""

from __future__ import annotations

import contextlib
import unittest

import pytest

from automate_testing.contracts import CONTRACT_TESTS, ConnectorContractTest
from automate_testing.http import MockResponse
from tests.testing_kit.broken import BrokenConnector, SubtlyBrokenConnector, sign


def not_collected(cls):
    """Keep pytest away from a contract class (with its rules) that a test runs by hand.

    Set after the class is made: a class that says ``__test__ = False`` in its body is an
    abstract base and gets no rules.
    """
    cls.__test__ = False
    return cls


@not_collected  # run by hand below: every one of its tests must fail
class BrokenContract(ConnectorContractTest):
    connector_class = BrokenConnector
    sample_inputs = {"list": {}}
    sample_responses = {"list": {"POST /do/list": MockResponse(json=[{"id": 1}])}}

    def get_config(self):
        return {"url": "https://broken.example", "token": "t"}

    def sign_webhook(self, raw_body, secret):
        return sign(raw_body, secret)


PREFIX = "BrokenConnector breaks the connector contract rule"

FAILURES = {
    "test_contract__specs_are_well_formed": [
        "'specs are serialisable and well formed'",
        "action names must be unique: 'create' is declared twice",
        "action 'list' input_schema is not a valid JSON Schema",
    ],
    "test_contract__config_schema_rejects_empty_config": [
        "'config_schema() rejects an empty config with INVALID_ARGUMENT'",
        "{} was accepted",
    ],
    "test_contract__unknown_action_is_invalid_argument": [
        "'an unknown action raises INVALID_ARGUMENT before any HTTP'",
        "contract_test_no_such_action({}) returned instead of raising",
    ],
    "test_contract__invalid_input_is_invalid_argument": [
        "'an input violating the action's schema raises INVALID_ARGUMENT before any HTTP'",
        "create({}) raised KeyError",
    ],
    "test_contract__normalize_error_returns_automate_error": [
        "'normalize_error() returns an AutomateError carrying the connector key'",
        "normalize_error(RuntimeError('contract-test failure')) returned",
    ],
    "test_contract__webhook_rejects_missing_signature": [
        "'verify_webhook rejects a request without a signature'",
    ],
    "test_contract__webhook_rejects_tampered_body": [
        "'verify_webhook rejects a tampered body'",
    ],
    "test_contract__webhook_rejects_wrong_secret": [
        "'verify_webhook rejects a signature made with another secret'",
    ],
    "test_contract__sample_actions_run": [
        "'action 'list' runs on its sample input and returns a JSON object'",
        "returned list [{'id': 1}], not a dict",
    ],
    "test_contract__valid_inputs_never_crash": [
        "'an input the action's schema accepts never crashes the connector'",
        "raised KeyError",
    ],
    "test_contract__service_failures_raise_automate_error": [
        "'a failing service (4xx, 5xx, timeout) raises an AutomateError with the right code "
        "and retryable, never returns'",
        "create({'title': ''}) raised KeyError: 'id' on HTTP 400",
    ],
}
FUZZ = "test_contract__fuzzed_inputs_raise_only_automate_error"


def contract_tests():
    return sorted(CONTRACT_TESTS)


def test_broken_connector__every_contract_rule_is_covered_here():
    passing = {
        "test_contract__get_config_is_valid",
        "test_contract__webhook_accepts_valid_signature",
    }
    assert set(contract_tests()) == {*FAILURES, FUZZ, *passing}


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_broken_connector__fails_the_contract_naming_the_rule(name):
    with pytest.raises(AssertionError) as failed:
        getattr(BrokenContract(), name)()
    message = str(failed.value)
    assert message.startswith(PREFIX), message
    for fragment in FAILURES[name]:
        assert fragment in message, message


def test_broken_connector__fuzzing_reports_a_shrunk_failing_call():
    with pytest.raises(AssertionError) as failed:
        getattr(BrokenContract(), FUZZ)()
    message = str(failed.value)
    assert message.startswith(PREFIX), message
    # Shrunk by hypothesis to a minimal failing call: create() on a non-object input.
    assert "create(" in message, message


@not_collected
class SubtlyBrokenContract(ConnectorContractTest):
    connector_class = SubtlyBrokenConnector
    sample_inputs = {"create": {"title": "t", "count": 1}}

    def get_config(self):
        return {"url": "https://subtle.example"}


def test_subtly_broken_connector__only_fuzzing_finds_the_bug():
    contract = SubtlyBrokenContract()
    for name in contract_tests():
        if name != FUZZ:
            # The webhook rules skip: the connector declares no trigger.
            with contextlib.suppress(unittest.SkipTest):
                getattr(SubtlyBrokenContract(), name)()
    with pytest.raises(AssertionError) as failed:
        getattr(contract, FUZZ)()
    message = str(failed.value)
    assert message.startswith(
        "SubtlyBrokenConnector breaks the connector contract rule "
        "'execute_action returns a JSON object or raises AutomateError'"
    ), message
    assert "'count': 4" in message, message  # the shrunk input: the smallest count > 3
    assert "not JSON-serialisable" in message, message


@pytest.mark.parametrize(
    "name", ["test_contract__get_config_is_valid", "test_contract__webhook_accepts_valid_signature"]
)
def test_broken_connector__rules_it_keeps_still_pass(name):
    getattr(BrokenContract(), name)()
