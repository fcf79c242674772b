"""docs/writing-a-connector.md runs as written: its connectors, taken from the page's code
blocks, pass the contract kit with the page's own test classes, and no rule is skipped."""

from __future__ import annotations

import re
import sys
import types
import unittest
from pathlib import Path

import pytest

from automate_testing.contracts import CONTRACT_TESTS

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-a-connector.md"
BLOCK_RE = re.compile(r"```python\n(.*?)```", re.DOTALL)


def blocks(first_line: str) -> str:
    """The page's Python blocks that start with ``first_line``, joined in order."""
    found = [b for b in BLOCK_RE.findall(DOC.read_text()) if b.startswith(first_line)]
    assert found, f"no block of {DOC.name} starts with {first_line!r}"
    return "\n".join(found)


@pytest.fixture
def page(monkeypatch):
    """The page's myapp.connectors module and its test module's namespace."""
    package = types.ModuleType("myapp")
    package.__path__ = []
    connectors = types.ModuleType("myapp.connectors")
    monkeypatch.setitem(sys.modules, "myapp", package)
    monkeypatch.setitem(sys.modules, "myapp.connectors", connectors)
    exec(blocks("# myapp/connectors.py"), connectors.__dict__)
    tests: dict = {"__name__": "myapp.tests.test_connectors"}
    exec(blocks("# myapp/tests/test_connectors.py"), tests)
    return tests


def run_all(contract) -> dict[str, str]:
    results = {}
    names = [*CONTRACT_TESTS, *(n for n in vars(contract) if n.startswith("test_"))]
    for name in dict.fromkeys(names):
        try:
            getattr(contract(), name)()
        except unittest.SkipTest as skip:
            results[name] = f"skipped: {skip}"
        else:
            results[name] = "passed"
    return results


def test_docs__the_page_uses_the_public_http_client():
    text = DOC.read_text()
    assert "self.http_client()" in text
    assert "_create_client" not in text


def test_docs__acme_connector_passes_every_rule_and_skips_none(page):
    results = run_all(page["TestAcmeConnector"])
    assert set(results.values()) == {"passed"}, results
    assert "test_create_ticket_sends_the_resolved_token" in results
    assert "test_contract__webhook_rejects_tampered_body" in results


def test_docs__receive_only_connector_runs_every_webhook_rule(page):
    results = run_all(page["TestMyWebhookConnector"])
    webhook = {name: r for name, r in results.items() if "webhook" in name}
    assert len(webhook) == 4
    assert set(webhook.values()) == {"passed"}, webhook
    # It has no actions and no configuration: only the rules about those skip.
    skipped = {name: r for name, r in results.items() if r != "passed"}
    assert skipped == {
        "test_contract__config_schema_rejects_empty_config": "skipped: empty_config_is_valid "
        "is set: the connector needs no configuration",
        "test_contract__invalid_input_is_invalid_argument": "skipped: no action has an input "
        "schema that some input violates",
        "test_contract__sample_actions_run": "skipped: declare sample_inputs (and "
        "sample_responses) to run each action",
        "test_contract__fuzzed_inputs_raise_only_automate_error": "skipped: the connector "
        "declares no actions",
        "test_contract__valid_inputs_never_crash": "skipped: the connector declares no actions",
        "test_contract__service_failures_raise_automate_error": "skipped: the connector "
        "declares no actions",
    }


def test_docs__secret_reference_reaches_the_service_resolved(page):
    # The page's config holds secret://ACME_TOKEN; the mocked Acme API sees the value,
    # as a connection profile would send it.
    contract = page["TestAcmeConnector"]()
    assert contract.get_config()["api_token"] == "secret://ACME_TOKEN"
    with contract.mock_http() as mock:
        mock.post("/tickets", json={"id": 1})
        contract.connector.execute_action("create_ticket", {"title": "Hi"})
    assert mock.calls[0].headers["Authorization"] == "Bearer acme-test-token"
    assert "secret://" not in repr(dict(mock.calls[0].headers))
