"""Contract tests every connector inherits: subclass, point at the connector, give a config.

::

    class TestJiraConnector(ConnectorContractTest):
        connector_class = JiraConnector

        def get_config(self):
            return {"url": "https://test.atlassian.net", "email": "t@example.com",
                    "api_token": "test-token"}

        def test_create_issue_success(self):
            with self.mock_http() as mock:
                mock.post("/rest/api/3/issue", json={"key": "TEST-1", "id": "1"})
                assert self.connector.execute_action("create_issue", {"summary": "Hi"})["key"]

The subclass gets the ``test_contract__*`` methods of :class:`ContractRules` for free. Each
checks one rule and fails with a message that names it; a rule that does not apply to the
connector (no actions, no verifying trigger, no samples) is skipped with the reason.
Optional class attributes make the kit test more: ``sample_inputs`` / ``sample_responses``
run each action against canned replies, ``sign_webhook()`` lets it check signatures both
ways.

:class:`ConnectorContractTest` is a plain pytest class; :class:`ConnectorContractTestCase`
is the same contract as a Django ``SimpleTestCase`` for ``manage.py test``. The base
classes themselves hold no ``test_*`` method: the rules are added to each subclass when it
is defined, so a test runner that collects every imported class (unittest's loader does,
and with it Django's runner) finds nothing to run, or to skip, in the bases.
"""

from __future__ import annotations

import functools
import unittest
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar, NoReturn

from django.test import SimpleTestCase

from automate_connectors.base import Connector, validate_config
from automate_core.providers.base import ProviderContext
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_testing import fuzzing, rules
from automate_testing.context import build_connector, make_context
from automate_testing.http import MockHTTP, MockResponse, UnmatchedRequest, mock_http

__all__ = [
    "CONTRACT_TESTS",
    "ConnectorContractMixin",
    "ConnectorContractTest",
    "ConnectorContractTestCase",
    "ContractRules",
]


class ConnectorContractMixin:
    """The contract; mix it into a pytest class or a ``unittest``/Django test case."""

    # Base classes are not collected; every subclass is (unless it sets __test__ itself).
    __test__ = False

    #: The connector class under test (required).
    connector_class: ClassVar[type[Connector] | None] = None
    #: ``secret://NAME`` values the test context resolves; nothing else resolves.
    secret_values: ClassVar[Mapping[str, str]] = {}
    #: Webhook secrets bound to the connector, newest first (as a profile would).
    webhook_secrets: ClassVar[tuple[str, ...]] = ("contract-test-webhook-secret",)
    #: action name -> an input the action accepts.
    sample_inputs: ClassVar[Mapping[str, Any]] = {}
    #: action name -> {"METHOD path_or_url": reply}, reply a MockResponse or a JSON body.
    sample_responses: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: Set when the connector legitimately needs no configuration at all.
    empty_config_is_valid: ClassVar[bool] = False
    #: Body used by the webhook rules.
    sample_webhook_body: ClassVar[bytes] = b'{"id": "evt_contract", "type": "contract.test"}'
    #: Hypothesis examples per fuzz run; the run is derandomized so CI is repeatable.
    fuzz_max_examples: ClassVar[int] = 30

    def __init_subclass__(cls, *, contract_base: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if contract_base or cls.__dict__.get("__test__") is False:
            # A base (ours, or one of yours marked __test__ = False): no rules to collect.
            cls.__test__ = False
            return
        cls.__test__ = True
        for name in CONTRACT_TESTS:
            if not hasattr(cls, name):
                setattr(cls, name, _rule(name))

    # -- Hooks a subclass fills in -----------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """The connector configuration used by every test (override it)."""
        raise AssertionError(
            f"{type(self).__name__} must define get_config() returning the connector's config"
        )

    def get_context(self) -> ProviderContext:
        """The :class:`ProviderContext` the connector is built with."""
        return make_context(self.secret_values)

    def sign_webhook(self, raw_body: bytes, secret: str) -> dict[str, str] | None:
        """Headers a real sender would add to ``raw_body`` signed with ``secret``.

        Return ``None`` (the default) when the test cannot sign: the rules that need a
        valid signature are then skipped with that reason.
        """
        return None

    # -- What tests use ----------------------------------------------------------------

    @property
    def connector(self) -> Connector:
        """The connector under test, built once per test with the test context."""
        cached = self.__dict__.get("_contract_connector")
        if cached is None:
            cached = self.build_connector()
            self.__dict__["_contract_connector"] = cached
        return cached

    def build_connector(self, config: Mapping[str, Any] | None = None) -> Connector:
        """A new connector from ``config`` (default: ``get_config()``), built as a connection
        profile builds it: ``secret://`` references in the config and in
        ``webhook_secrets`` are resolved first (with ``secret_values``)."""
        return build_connector(
            self._connector_class(),
            self.get_config() if config is None else config,
            ctx=self.get_context(),
            webhook_secrets=self.webhook_secrets,
        )

    def mock_http(
        self, base_url: str | None = None, **options: Any
    ) -> AbstractContextManager[MockHTTP]:
        """:func:`automate_testing.http.mock_http` rooted at the connector's base URL."""
        return mock_http(self.connector.base_url if base_url is None else base_url, **options)

    # -- Helpers -----------------------------------------------------------------------

    def _connector_class(self) -> type[Connector]:
        cls = self.connector_class
        if cls is None:
            raise AssertionError(
                f"{type(self).__name__} must set connector_class = <your Connector subclass>"
            )
        return cls

    def _broken(self, rule: str, detail: str) -> NoReturn:
        name = self.connector_class.__name__ if self.connector_class else type(self).__name__
        raise rules.broken(name, rule, detail)

    def _skip(self, reason: str) -> NoReturn:
        # unittest.SkipTest is a skip for pytest and for unittest (Django's runner) alike.
        raise unittest.SkipTest(reason)

    def _require_verifying_trigger(self) -> None:
        if not rules.verifying_triggers(self._connector_class()):
            self._skip("no trigger declares a verification_method: no webhooks to verify")

    def _signed_headers(self, body: bytes, secret: str) -> dict[str, str]:
        self._require_verifying_trigger()
        headers = self.sign_webhook(body, secret)
        if headers is None:
            self._skip("define sign_webhook(raw_body, secret) on the test class to check this")
        return dict(headers)

    def _expect_rejected_before_http(self, rule: str, action: str, input_data: Any) -> None:
        with self.mock_http(fallback=MockResponse(json={})) as mock:
            try:
                self.connector.execute_action(action, input_data)
            except AutomateError as exc:
                if exc.code != ErrorCodes.INVALID_ARGUMENT:
                    self._broken(rule, f"{action}({input_data!r}) raised {exc!r}")
            except Exception as exc:
                self._broken(rule, f"{action}({input_data!r}) raised {type(exc).__name__}: {exc}")
            else:
                self._broken(rule, f"{action}({input_data!r}) returned instead of raising")
        if mock.calls:
            made = rules.describe_calls(mock)
            self._broken(rule, f"{action}({input_data!r}) made HTTP requests first: {made}")

    @contextmanager
    def _mock_samples(
        self, action: str, *, status: int | None = None, fallback: bool = False
    ) -> Iterator[MockHTTP]:
        """mock_http() answering with the action's sample replies."""
        with self.mock_http() as mock:
            self._load_samples(mock, action, status=status, fallback=fallback)
            yield mock

    def _load_samples(
        self, mock: MockHTTP, action: str, *, status: int | None = None, fallback: bool = False
    ) -> None:
        """Replace ``mock``'s routes with ``action``'s samples (all given ``status``, if set)."""
        mock.reset()
        mock.fallback = MockResponse(json={}, status=status or 200) if fallback else None
        for route, value in (self.sample_responses.get(action) or {}).items():
            method, _, target = route.partition(" ")
            canned = value if isinstance(value, MockResponse) else MockResponse(json=value)
            mock.add(
                method,
                target.strip(),
                json=canned.json,
                status=status or canned.status,
                headers=canned.headers,
                body=canned.body,
            )


class ContractRules(ConnectorContractMixin, contract_base=True):
    """The contract tests; each subclass of a contract base gets its own copy of each."""

    # -- The rules ------------------------------------------------------------------

    def test_contract__specs_are_well_formed(self) -> None:
        problems = rules.spec_problems(self._connector_class())
        if problems:
            self._broken("specs are serialisable and well formed", "\n  - ".join(["", *problems]))

    def test_contract__get_config_is_valid(self) -> None:
        try:
            validate_config(self._connector_class(), self.get_config())
        except AutomateError as exc:
            self._broken("get_config() satisfies config_schema()", str(exc))

    def test_contract__config_schema_rejects_empty_config(self) -> None:
        if self.empty_config_is_valid:
            self._skip("empty_config_is_valid is set: the connector needs no configuration")
        cls = self._connector_class()
        try:
            validate_config(cls, {})
        except AutomateError as exc:
            if exc.code != ErrorCodes.INVALID_ARGUMENT:
                self._broken(
                    "config_schema() rejects an empty config with INVALID_ARGUMENT",
                    f"the error code was {exc.code.value}",
                )
            return
        self._broken(
            "config_schema() rejects an empty config with INVALID_ARGUMENT",
            "{} was accepted; mark required fields, or set empty_config_is_valid = True on "
            "the test class if the connector really needs no configuration",
        )

    def test_contract__unknown_action_is_invalid_argument(self) -> None:
        rule = "an unknown action raises INVALID_ARGUMENT before any HTTP"
        self._expect_rejected_before_http(rule, "contract_test_no_such_action", {})

    def test_contract__invalid_input_is_invalid_argument(self) -> None:
        cases = rules.invalid_inputs(self._connector_class())
        if not cases:
            self._skip("no action has an input schema that some input violates")
        for action, bad_input in cases:
            rule = "an input violating the action's schema raises INVALID_ARGUMENT before any HTTP"
            self._expect_rejected_before_http(rule, action, bad_input)

    def test_contract__normalize_error_returns_automate_error(self) -> None:
        connector = self.connector
        for exc in rules.sample_exceptions():
            rule = "normalize_error() returns an AutomateError carrying the connector key"
            try:
                result = connector.normalize_error(exc)
            except Exception as raised:
                self._broken(rule, f"normalize_error({exc!r}) raised {raised!r}")
            if not isinstance(result, AutomateError):
                self._broken(rule, f"normalize_error({exc!r}) returned {result!r}")
            if result.provider != connector.key:
                self._broken(
                    rule,
                    f"normalize_error({exc!r}) returned provider={result.provider!r}, "
                    f"expected {connector.key!r}",
                )

    def test_contract__webhook_rejects_missing_signature(self) -> None:
        self._require_verifying_trigger()
        headers = {"Content-Type": "application/json"}
        if self.connector.check_webhook(headers, self.sample_webhook_body):
            self._broken(
                "verify_webhook rejects a request without a signature",
                "a request with no signature header was accepted",
            )

    def test_contract__webhook_accepts_valid_signature(self) -> None:
        headers = self._signed_headers(self.sample_webhook_body, self.webhook_secrets[0])
        if not self.connector.check_webhook(headers, self.sample_webhook_body):
            self._broken(
                "verify_webhook accepts a request signed with the webhook secret",
                f"headers {sorted(headers)} from sign_webhook() were rejected: the verifier "
                "or the test's sign_webhook() is wrong",
            )

    def test_contract__webhook_rejects_tampered_body(self) -> None:
        body = self.sample_webhook_body
        headers = self._signed_headers(body, self.webhook_secrets[0])
        tampered = body[:-1] + bytes([body[-1] ^ 0x01]) if body else b"x"
        if self.connector.check_webhook(headers, tampered):
            self._broken(
                "verify_webhook rejects a tampered body",
                f"the signature of {body!r} was accepted for {tampered!r}",
            )

    def test_contract__webhook_rejects_wrong_secret(self) -> None:
        body = self.sample_webhook_body
        headers = self._signed_headers(body, "contract-test-some-other-secret")
        if self.connector.check_webhook(headers, body):
            self._broken(
                "verify_webhook rejects a signature made with another secret",
                "a request signed with a secret the connector does not hold was accepted",
            )

    def test_contract__sample_actions_run(self) -> None:
        cls = self._connector_class()
        if not self.sample_inputs:
            self._skip("declare sample_inputs (and sample_responses) to run each action")
        for action, sample in self.sample_inputs.items():
            rule = f"action {action!r} runs on its sample input and returns a JSON object"
            names = [spec.name for spec in cls.actions()]
            if action not in names:
                self._broken(rule, f"sample_inputs names {action!r}, not an action ({names})")
            problem = rules.input_problem(cls, action, sample)
            if problem:
                self._broken(rule, f"the sample input itself is invalid: {problem}")
            mock = MockHTTP()
            try:
                with self._mock_samples(action) as mock:
                    result = self.connector.execute_action(action, sample)
            except UnmatchedRequest as exc:
                self._broken(rule, f"it made a request its sample_responses do not answer: {exc}")
            except AutomateError as exc:
                self._broken(rule, f"raised {exc!r}; requests made: {rules.describe_calls(mock)}")
            except Exception as exc:
                self._broken(rule, f"raised {type(exc).__name__}: {exc}")
            problem = rules.output_problem(cls.get_action(action), result)
            if problem:
                self._broken(rule, problem)

    def test_contract__fuzzed_inputs_raise_only_automate_error(self) -> None:
        fuzzing.any_input_raises_only_automate_error(self)

    def test_contract__valid_inputs_never_crash(self) -> None:
        fuzzing.valid_inputs_never_crash(self)

    def test_contract__service_failures_raise_automate_error(self) -> None:
        fuzzing.service_failures_raise_automate_error(self)


#: The names of the contract tests every subclass of a contract base class gets.
CONTRACT_TESTS: tuple[str, ...] = tuple(
    name for name in ContractRules.__dict__ if name.startswith("test_contract__")
)


def _rule(name: str) -> Callable[[Any], None]:
    """A subclass's own copy of a rule, so that marks put on it (``xfail``,
    ``unittest.expectedFailure``) stay on that subclass."""
    impl = getattr(ContractRules, name)

    @functools.wraps(impl)
    def rule(self: Any) -> None:
        impl(self)

    return rule


class ConnectorContractTest(ConnectorContractMixin, contract_base=True):
    """The contract as a plain pytest class (the spec's ``ConnectorContractTest``)."""


class ConnectorContractTestCase(ConnectorContractMixin, SimpleTestCase, contract_base=True):
    """The contract as a Django ``SimpleTestCase``, for ``manage.py test``."""
