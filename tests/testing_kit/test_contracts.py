"""ConnectorContractTest and ConnectorContractTestCase: collection, hooks, unittest runs."""

from __future__ import annotations

import io
import unittest

import pytest
from pydantic import BaseModel

from automate_connectors.base import ActionSpec, Connector
from automate_connectors.builtin.jira import JiraConnector as BuiltinJira
from automate_core.secrets import SecretNotFound
from automate_testing.context import make_context
from automate_testing.contracts import (
    CONTRACT_TESTS,
    ConnectorContractMixin,
    ConnectorContractTest,
    ConnectorContractTestCase,
)
from automate_testing.http import mock_http
from tests.testapp.connectors import JiraConnector, MyWebhookConnector

JIRA_CONFIG = {"url": "https://test.atlassian.net", "email": "t@example.com", "api_token": "t"}


def make_classes():
    """Built in a function so that pytest does not collect them from this module."""

    class SpecJiraCase(ConnectorContractTestCase):
        connector_class = BuiltinJira
        secret_values = {"JIRA_TOKEN": "t0ken"}

        def get_config(self):
            return {**JIRA_CONFIG, "api_token": "secret://JIRA_TOKEN"}

    class Abstract(ConnectorContractTest):
        __test__ = False

    class Concrete(Abstract):
        connector_class = JiraConnector

    return SpecJiraCase, Abstract, Concrete


def run_unittest(case: type[unittest.TestCase]) -> unittest.TestResult:
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(case)
    return unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)


def test_contract_classes__bases_are_not_collected_subclasses_are():
    SpecJiraCase, Abstract, Concrete = make_classes()
    assert ConnectorContractMixin.__test__ is False
    assert ConnectorContractTest.__test__ is False
    assert ConnectorContractTestCase.__test__ is False
    assert Abstract.__test__ is False  # an explicit opt-out is respected
    assert Concrete.__test__ is True
    assert SpecJiraCase.__test__ is True
    # The bases hold no test method for any runner to collect; every subclass has each.
    for base in (ConnectorContractMixin, ConnectorContractTest, ConnectorContractTestCase):
        assert not [name for name in dir(base) if name.startswith("test")], base
    assert not [name for name in dir(Abstract) if name.startswith("test")]
    for concrete in (Concrete, SpecJiraCase):
        assert set(CONTRACT_TESTS) <= set(dir(concrete))


def test_contract_classes__each_subclass_has_its_own_copy_of_a_rule():
    SpecJiraCase, _, Concrete = make_classes()
    name = "test_contract__specs_are_well_formed"
    # Marks (xfail, unittest.expectedFailure) set on one class's rule stay on that class.
    assert getattr(SpecJiraCase, name) is not getattr(Concrete, name)


def test_contract_test_case__runs_under_unittest_like_djangos_runner():
    SpecJiraCase, _, _ = make_classes()
    result = run_unittest(SpecJiraCase)
    assert result.errors == []
    assert result.failures == []
    ran = result.testsRun - len(result.skipped)
    assert ran >= 6
    reasons = {reason for _, reason in result.skipped}
    assert "declare sample_inputs (and sample_responses) to run each action" in reasons


def test_contract_test_case__the_imported_base_runs_and_skips_nothing():
    # unittest's loader collects every TestCase a module imports, the base too.
    result = run_unittest(ConnectorContractTestCase)
    assert (result.testsRun, result.skipped) == (0, [])


def test_contract_test__missing_connector_class_fails_with_the_fix():
    class NoClass(ConnectorContractTest):
        def get_config(self):
            return {}

    with pytest.raises(AssertionError, match="must set connector_class = "):
        NoClass().test_contract__specs_are_well_formed()


def test_contract_test__missing_get_config_fails_with_the_fix():
    _, _, Concrete = make_classes()
    with pytest.raises(AssertionError, match=r"must define get_config\(\)"):
        Concrete().connector  # noqa: B018


def test_contract_test__connector_is_built_once_per_test_with_the_test_context():
    class WithSecrets(ConnectorContractTest):
        connector_class = MyWebhookConnector
        secret_values = {"hook": "s3cret"}
        webhook_secrets = ("newest", "older")

        def get_config(self):
            return {}

    case = WithSecrets()
    connector = case.connector
    assert case.connector is connector
    assert connector.secrets == ["newest", "older"]
    assert connector.ctx.resolve_secret("secret://hook") == "s3cret"
    with pytest.raises(SecretNotFound):
        # Only test secrets resolve: settings and environment backends are not asked.
        connector.ctx.resolve_secret("secret://my-service-webhook")
    assert WithSecrets().connector is not connector


def test_contract_test__mock_http_is_rooted_at_the_connector_base_url():
    class Jira(ConnectorContractTest):
        connector_class = JiraConnector

        def get_config(self):
            return dict(JIRA_CONFIG)

    with Jira().mock_http() as mock:
        route = mock.get("/rest/api/3/myself")
    assert route.url == "https://test.atlassian.net/rest/api/3/myself"


def test_contract_test__empty_config_rule_can_be_switched_off():
    class NoConfigNeeded(ConnectorContractTest):
        connector_class = MyWebhookConnector
        empty_config_is_valid = True

        def get_config(self):
            return {}

    with pytest.raises(unittest.SkipTest, match="needs no configuration"):
        NoConfigNeeded().test_contract__config_schema_rejects_empty_config()


def test_contract_test__a_verifying_connector_without_a_signer_skips_signed_rules():
    class Hooks(ConnectorContractTest):
        connector_class = MyWebhookConnector
        empty_config_is_valid = True

        def get_config(self):
            return {}

    # MyWebhookConnector declares no trigger: the webhook rules do not apply at all.
    with pytest.raises(unittest.SkipTest, match="no trigger declares a verification_method"):
        Hooks().test_contract__webhook_rejects_missing_signature()


def test_contract_test__sample_without_its_responses_names_the_missing_route():
    class Samples(ConnectorContractTest):
        connector_class = JiraConnector
        sample_inputs = {"create_issue": {"summary": "Hi"}}

        def get_config(self):
            return dict(JIRA_CONFIG)

    with pytest.raises(AssertionError) as failed:
        Samples().test_contract__sample_actions_run()
    message = str(failed.value)
    assert message.startswith(
        "JiraConnector breaks the connector contract rule "
        "'action 'create_issue' runs on its sample input and returns a JSON object': "
        "it made a request its sample_responses do not answer"
    ), message
    assert "POST https://test.atlassian.net/rest/api/3/issue" in message


def test_contract_test__sample_for_an_unknown_action_or_invalid_input_fails():
    class Unknown(ConnectorContractTest):
        connector_class = JiraConnector
        sample_inputs = {"delete_everything": {}}

        def get_config(self):
            return dict(JIRA_CONFIG)

    class Invalid(Unknown):
        sample_inputs = {"create_issue": {"summary": 5}}

    with pytest.raises(AssertionError, match="sample_inputs names 'delete_everything', not an"):
        Unknown().test_contract__sample_actions_run()
    with pytest.raises(AssertionError, match=r"the sample input itself is invalid: at \$.summary"):
        Invalid().test_contract__sample_actions_run()


class TokenConfig(BaseModel):
    url: str
    api_token: str


class TokenConnector(Connector):
    """Sends its configured token as is: it relies on the profile resolving references."""

    key = "token_sender"

    @classmethod
    def config_schema(cls):
        return TokenConfig

    @classmethod
    def actions(cls):
        return [ActionSpec(name="ping")]

    def execute_action(self, action, input_data):
        with self.http_client() as client:
            token = f"Bearer {self.cfg.api_token}"
            response = client.get("/ping", headers={"Authorization": token})
        response.raise_for_status()
        return {"ok": True}


TOKEN_CONFIG = {"url": "https://acme.example", "api_token": "secret://ACME_TOKEN"}


def test_contract_test__config_secret_references_are_resolved_as_in_production():
    class Acme(ConnectorContractTest):
        connector_class = TokenConnector
        secret_values = {"ACME_TOKEN": "acme-t0ken", "HOOK": "hook-secret"}
        webhook_secrets = ("secret://HOOK", "plain-older-secret")

        def get_config(self):
            return dict(TOKEN_CONFIG)

    case = Acme()
    with case.mock_http() as mock:
        mock.get("/ping", json={})
        case.connector.execute_action("ping", {})
    assert mock.calls[0].headers["Authorization"] == "Bearer acme-t0ken"
    # Webhook secrets are resolved too, as a profile's are.
    assert case.connector.secrets == ["hook-secret", "plain-older-secret"]


def test_connector_factory__resolves_config_references_as_in_production(connector_factory):
    acme = connector_factory(
        TokenConnector, config=TOKEN_CONFIG, secret_values={"ACME_TOKEN": "acme-t0ken"}
    )
    assert acme.cfg.api_token == "acme-t0ken"
    with pytest.raises(SecretNotFound, match="ACME_TOKEN"):
        connector_factory(TokenConnector, config=TOKEN_CONFIG)  # no value given: no build


def test_connector_http_client__is_rooted_at_the_base_url_and_the_old_name_still_works():
    acme = TokenConnector({"url": "https://acme.example", "api_token": "t"}, ctx=make_context())
    with acme.http_client(timeout=5) as client, mock_http() as mock:
        mock.get("https://acme.example/v1/x", json={"a": 1})
        assert client.get("/v1/x").json() == {"a": 1}
        assert client.timeout.read == 5
    with acme._create_client() as old:
        assert str(old.base_url) == "https://acme.example"
