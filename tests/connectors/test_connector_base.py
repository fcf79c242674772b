"""The Connector base: the spec's client connectors, action validation, errors, registry."""

from __future__ import annotations

import httpx
import pytest
import respx
from django.core.exceptions import AppRegistryNotReady, ImproperlyConfigured
from pydantic import BaseModel

from automate_connectors.base import ActionSpec, Connector, TriggerSpec, validate_config
from automate_connectors.registry import ConnectorRegistry, get_connector
from automate_core.providers.base import ProviderContext
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_core.registry import AlreadyRegistered, NotRegistered, Registry
from tests.testapp.connectors import JiraConnector, MyWebhookConnector

JIRA_CONFIG = {"url": "https://test.atlassian.net", "email": "a@example.com", "api_token": "t0k"}


@pytest.fixture
def jira() -> JiraConnector:
    return JiraConnector(JIRA_CONFIG, ctx=ProviderContext(trace_id="t"))


def test_registry__client_connectors_are_autodiscovered():
    assert get_connector("my_service") is MyWebhookConnector
    assert get_connector("jira") is JiraConnector


def test_registry__unknown_key_lists_what_is_registered():
    with pytest.raises(NotRegistered, match=r"'nope' \(registered: .*my_service"):
        get_connector("nope")


def test_registry__same_class_twice_is_harmless_other_class_raises():
    registry = ConnectorRegistry()
    registry.register(MyWebhookConnector)
    registry.register(MyWebhookConnector)

    class Impostor(Connector):
        key = "my_service"

    with pytest.raises(AlreadyRegistered, match=r"taken by tests\.testapp\.connectors"):
        registry.register(Impostor)


def test_registry__project_class_replaces_builtin_but_not_the_reverse():
    registry = Registry("thing")

    class Builtin:
        key = "x"

    class Mine:
        key = "x"

    registry.register(Builtin, builtin=True)
    registry.register(Mine)
    assert registry.get("x") is Mine
    registry.register(Builtin, builtin=True)
    assert registry.get("x") is Mine


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"key": ""}, "non-empty string `key`"),
        (
            {"actions": classmethod(lambda cls: [ActionSpec(name="a"), ActionSpec(name="a")])},
            "declares the action 'a' twice",
        ),
        (
            {
                "actions": classmethod(
                    lambda cls: [ActionSpec(name="a", input_schema={"type": "nonsense"})]
                )
            },
            "invalid input_schema",
        ),
        ({"config_schema": classmethod(lambda cls: dict)}, "pydantic BaseModel subclass"),
        (
            {"triggers": classmethod(lambda cls: [TriggerSpec(name="t"), TriggerSpec(name="t")])},
            "declares a trigger twice",
        ),
    ],
)
def test_registry__bad_shape_is_a_type_error_at_registration(attrs, message):
    cls = type("Broken", (Connector,), {"key": "broken", **attrs})
    with pytest.raises(TypeError, match=message):
        ConnectorRegistry().register(cls)


def test_registry__not_a_connector_is_refused():
    with pytest.raises(TypeError, match="must subclass"):
        ConnectorRegistry().register(type("Plain", (), {"key": "plain"}))


def test_registry__use_before_ready_says_how_to_fix(monkeypatch):
    from django.apps import apps

    registry = ConnectorRegistry()
    monkeypatch.setattr(apps, "ready", False)
    with pytest.raises(AppRegistryNotReady, match=r"after django.setup\(\)"):
        registry.get("jira")


def test_execute_action__valid_input_reaches_the_service(jira):
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post("https://test.atlassian.net/rest/api/3/issue").respond(
            201, json={"key": "TEST-1", "id": "10001"}
        )
        result = jira.execute_action("create_issue", {"summary": "Hello"})
    assert result == {"key": "TEST-1", "id": "10001"}
    sent = route.calls.last.request
    assert httpx.Response(200, content=sent.content).json()["fields"]["summary"] == "Hello"


@pytest.mark.parametrize(
    ("action", "data", "message"),
    [
        ("delete_everything", {}, "has no action 'delete_everything'"),
        ("create_issue", {}, r"at \$: 'summary' is a required property"),
        ("create_issue", {"summary": 5}, r"at \$.summary: 5 is not of type 'string'"),
        ("create_issue", "not a dict", "is not of type 'object'"),
    ],
)
def test_execute_action__bad_input_is_invalid_argument_before_any_http(jira, action, data, message):
    with respx.mock(assert_all_mocked=True) as mock:  # any request would fail the test
        with pytest.raises(AutomateError, match=message) as info:
            jira.execute_action(action, data)
        assert not mock.calls
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert info.value.provider == "jira"
    assert not info.value.retryable


def test_execute_action__library_errors_go_through_normalize_error(jira):
    with respx.mock() as mock:
        mock.post("https://test.atlassian.net/rest/api/3/issue").mock(
            side_effect=httpx.ConnectError("refused")
        )
        with pytest.raises(AutomateError) as info:
            jira.execute_action("create_issue", {"summary": "x"})
    # The spec's JiraConnector.normalize_error maps everything to INTERNAL, which means
    # "nothing better is known": the base knows a refused connection is worth a retry.
    assert info.value.code == ErrorCodes.UNAVAILABLE and info.value.retryable
    assert info.value.provider == "jira"
    assert isinstance(info.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (400, ErrorCodes.INVALID_ARGUMENT, False),
        (401, ErrorCodes.UNAUTHENTICATED, False),
        (404, ErrorCodes.NOT_FOUND, False),
        (429, ErrorCodes.RATE_LIMITED, True),
        (503, ErrorCodes.UNAVAILABLE, True),
    ],
)
def test_execute_action__a_crash_on_an_error_answer_reports_the_answer(
    jira, status, code, retryable
):
    # The spec's sketch never checks the status: it reads response.json()["key"] from the
    # error body and raises KeyError. The status it received says what happened.
    with respx.mock() as mock:
        mock.post("https://test.atlassian.net/rest/api/3/issue").respond(
            status, json={"errorMessages": ["no"]}
        )
        with pytest.raises(AutomateError) as info:
            jira.execute_action("create_issue", {"summary": "x"})
    assert (info.value.code, info.value.retryable) == (code, retryable)
    assert f"HTTP {status} from jira" in info.value.message
    assert "KeyError" in info.value.message
    assert isinstance(info.value.__cause__, KeyError)


def test_execute_action__a_bug_after_a_good_answer_stays_internal(jira):
    with respx.mock() as mock:
        mock.post("https://test.atlassian.net/rest/api/3/issue").respond(201, json={"id": "1"})
        with pytest.raises(AutomateError) as info:
            jira.execute_action("create_issue", {"summary": "x"})  # no "key": KeyError
    assert info.value.code == ErrorCodes.INTERNAL and not info.value.retryable


def test_execute_action__an_error_answer_the_action_handled_is_forgotten_next_call(jira):
    with respx.mock() as mock:
        route = mock.post("https://test.atlassian.net/rest/api/3/issue")
        route.side_effect = [httpx.Response(503, json={}), httpx.Response(201, json={"id": "1"})]
        with pytest.raises(AutomateError) as first:
            jira.execute_action("create_issue", {"summary": "x"})
        with pytest.raises(AutomateError) as second:
            jira.execute_action("create_issue", {"summary": "x"})
    assert first.value.code == ErrorCodes.UNAVAILABLE
    assert second.value.code == ErrorCodes.INTERNAL  # this call saw no error answer


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (401, ErrorCodes.UNAUTHENTICATED, False),
        (403, ErrorCodes.PERMISSION_DENIED, False),
        (404, ErrorCodes.NOT_FOUND, False),
        (429, ErrorCodes.RATE_LIMITED, True),
        (503, ErrorCodes.UNAVAILABLE, True),
    ],
)
def test_normalize_error__default_maps_http_statuses(status, code, retryable):
    class Service(Connector):
        key = "service"

        @classmethod
        def actions(cls):
            return [ActionSpec(name="ping")]

        def execute_action(self, action, input_data):
            response = httpx.Response(status, request=httpx.Request("GET", "https://x.test/"))
            response.raise_for_status()
            return {}

    with pytest.raises(AutomateError) as info:
        Service({}, ctx=ProviderContext()).execute_action("ping", {})
    assert (info.value.code, info.value.retryable, info.value.provider) == (
        code,
        retryable,
        "service",
    )


def test_validate_config__names_every_bad_field():
    with pytest.raises(AutomateError, match=r"url: Field required; email: Field required") as info:
        validate_config(JiraConnector, {"api_token": "x"})
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert info.value.details["fields"] == ["url", "email"]


def test_connector__base_init_validates_config_with_its_schema():
    class Cfg(BaseModel):
        token: str

    class WithConfig(Connector):
        key = "with_config"

        @classmethod
        def config_schema(cls):
            return Cfg

    assert WithConfig({"token": "a"}, ctx=ProviderContext()).cfg.token == "a"
    with pytest.raises(AutomateError, match="token: Field required"):
        WithConfig({}, ctx=ProviderContext())


def test_secret__missing_secret_is_a_configuration_error_naming_the_fix(connector_factory):
    connector = connector_factory(MyWebhookConnector)
    with pytest.raises(ImproperlyConfigured, match=r'AUTOMATE\["CONNECTORS"\]'):
        connector.secret  # noqa: B018
    assert connector.check_webhook({"X-Signature": "00"}, b"{}") is False


def test_check_webhook__binds_each_secret_in_turn(connector_factory):
    import hashlib
    import hmac

    connector = connector_factory(MyWebhookConnector, secrets=["newest-secret", "older-secret"])
    body = b'{"a": 1}'
    old_sig = hmac.new(b"older-secret", body, hashlib.sha256).hexdigest()
    assert connector.check_webhook({"X-Signature": old_sig}, body) is True
    assert connector.secret == "newest-secret"  # nothing stays bound after the check


def test_capabilities__default_reflects_actions_and_triggers():
    class Both(Connector):
        key = "both"

        @classmethod
        def actions(cls):
            return [ActionSpec(name="a")]

        @classmethod
        def triggers(cls):
            return [TriggerSpec(name="t", verification_method="hmac")]

    [capability] = Both.capabilities()
    assert capability.modalities == {"action", "trigger"}
    assert JiraConnector.capabilities()[0].modalities == {"action", "trigger"}
