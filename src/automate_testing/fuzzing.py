"""The contract rules that run a connector's actions on generated inputs (Hypothesis).

Each function is the body of one ``test_contract__*`` method and takes the running
contract test (a :class:`~automate_testing.contracts.ConnectorContractMixin`), whose
``mock_http()``, samples and ``_broken()`` it uses. Every run is derandomized, so CI sees
the same examples each time, and a failure is shrunk to the smallest failing call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from automate_core.providers.errors import AutomateError
from automate_testing import rules

if TYPE_CHECKING:
    from automate_testing.contracts import ConnectorContractMixin

__all__ = [
    "any_input_raises_only_automate_error",
    "service_failures_raise_automate_error",
    "valid_inputs_never_crash",
]

_MISSING_EXTRA = (
    "the connector contract kit needs {package}: pip install 'django-automate[testing]'"
)
CRASH_RULE = "an input the action's schema accepts never crashes the connector"


def any_input_raises_only_automate_error(case: ConnectorContractMixin) -> None:
    """Inputs shaped by the schema and arbitrary JSON, against any reply: invalid ones raise
    INVALID_ARGUMENT before HTTP, valid ones return a JSON object or raise AutomateError."""
    _require_hypothesis()
    from hypothesis import given
    from hypothesis import strategies as st

    # optional extra: automate_testing.strategies needs hypothesis (the testing extra)
    from automate_testing.strategies import action_inputs

    cls = case._connector_class()
    cases = _action_calls(case, action_inputs)
    connector = case.connector
    statuses = st.sampled_from([None, 400, 401, 404, 429, 500, 503])

    @settings_for(case)
    @given(call=cases, status=statuses)
    def run(call: tuple[str, Any], status: int | None) -> None:
        action, input_data = call
        valid = rules.input_problem(cls, action, input_data) is None
        case._load_samples(mock, action, status=status, fallback=True)
        try:
            result = connector.execute_action(action, input_data)
        except AutomateError as exc:
            rules.check_fuzz_error(connector, action, input_data, valid, exc, mock)
            return
        except Exception as exc:
            case._broken(
                "execute_action raises nothing but AutomateError",
                f"{action}({input_data!r}) raised {type(exc).__name__}: {exc}",
            )
        rules.check_fuzz_result(connector, action, input_data, valid, result)

    # One set of patches for the whole run; each example loads its own routes.
    with case.mock_http() as mock:
        run()
        mock.reset()


def valid_inputs_never_crash(case: ConnectorContractMixin) -> None:
    """Inputs the schema accepts (the samples first) never crash the connector's code.

    A crash is an exception other than AutomateError, even one the base class reported as
    an INTERNAL error (:func:`rules.hidden_crash`). It counts when it came before any
    request, or after replies the test declared (``sample_responses``): after the kit's
    made-up ``{}`` it may be the reply's fault, so it is let go.
    """
    _require_hypothesis()
    from hypothesis import example, given
    from hypothesis.errors import Unsatisfiable

    # optional extra: automate_testing.strategies needs hypothesis (the testing extra)
    from automate_testing.strategies import valid_inputs

    cls = case._connector_class()
    cases = _action_calls(case, valid_inputs)
    connector = case.connector

    def run(call: tuple[str, Any]) -> None:
        action, input_data = call
        if rules.input_problem(cls, action, input_data) is not None:
            return  # an invalid sample: test_contract__sample_actions_run reports it
        case._load_samples(mock, action, fallback=True)
        text = f"{action}({input_data!r})"
        try:
            connector.execute_action(action, input_data)
        except AutomateError as exc:
            crash = rules.hidden_crash(exc)
            if crash is not None and rules.replies_were_realistic(mock):
                case._broken(
                    CRASH_RULE,
                    f"{text} crashed with {type(crash).__name__}: {crash} (reported as "
                    f"{exc!r}); requests made: {rules.describe_calls(mock)}",
                )
        except Exception as exc:
            case._broken(CRASH_RULE, f"{text} raised {type(exc).__name__}: {exc}")

    test = given(call=cases)(run)
    for sample in case.sample_inputs.items():
        test = example(call=sample)(test)
    with case.mock_http() as mock:
        try:
            settings_for(case)(test)()
        except Unsatisfiable:
            case._skip(
                "no input its input_schema accepts could be generated: declare "
                "sample_inputs for each action"
            )
        mock.reset()


def service_failures_raise_automate_error(case: ConnectorContractMixin) -> None:
    """Each action, on its sample input (else the simplest valid one), against each of
    :data:`rules.SERVICE_FAILURES`: an AutomateError with the right code and retryable."""
    _require_hypothesis()
    specs = case._connector_class().actions()
    if not specs:
        case._skip("the connector declares no actions")
    connector = case.connector
    exercised = False
    with case.mock_http() as mock:
        for spec in specs:
            input_data = input_for(case, spec.name, spec.input_schema)
            for failure in rules.SERVICE_FAILURES:
                mock.reset()
                mock.fallback = failure.reply()
                outcome: Any
                try:
                    outcome = connector.execute_action(spec.name, input_data)
                except Exception as exc:
                    outcome = exc
                if not mock.calls:
                    break  # this input makes no request: the service cannot fail it
                exercised = True
                text = f"{spec.name}({input_data!r})"
                problem = rules.service_failure_problem(connector, text, failure, outcome)
                if problem:
                    case._broken(rules.SERVICE_FAILURE_RULE, problem)
        mock.reset()
    if not exercised:
        case._skip(
            "no action sent a request on its sample input (or, without one, on the "
            "simplest input its schema accepts): declare sample_inputs"
        )


def settings_for(case: ConnectorContractMixin) -> Any:
    """Hypothesis settings of the rules: derandomized, ``fuzz_max_examples`` examples."""
    from hypothesis import HealthCheck, Phase, settings

    return settings(
        max_examples=case.fuzz_max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        report_multiple_bugs=False,
        # No explain phase: it reruns many variants of a failure, slow on real clients.
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )


def input_for(case: ConnectorContractMixin, action: str, schema: dict[str, Any]) -> Any:
    """The action's sample input, else the simplest input its schema accepts."""
    # optional extra: automate_testing.strategies needs hypothesis (the testing extra)
    from automate_testing.strategies import minimal_input

    sample = case.sample_inputs.get(action)
    if sample is not None and rules.input_problem(case._connector_class(), action, sample):
        sample = None  # test_contract__sample_actions_run reports it
    return minimal_input(schema) if sample is None else sample


def _action_calls(case: ConnectorContractMixin, inputs: Callable[[dict[str, Any]], Any]) -> Any:
    """A strategy of ``(action name, input)`` over every action, ``inputs`` making the input
    from the action's schema; skips the rule when the connector has no action."""
    from hypothesis import strategies as st

    specs = case._connector_class().actions()
    if not specs:
        case._skip("the connector declares no actions")
    return st.one_of([st.tuples(st.just(spec.name), inputs(spec.input_schema)) for spec in specs])


def _require_hypothesis() -> None:
    try:
        import hypothesis  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise AssertionError(_MISSING_EXTRA.format(package="hypothesis")) from None
