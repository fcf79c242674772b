"""Workflow author: templates that try to take the worker's time or memory (issue 18,
findings 4, 5 and the templating half of 17).

A template is written by whoever may save a workflow. It must not be able to stall a
worker, exhaust its memory, or fail the other workflows of the same event. No wall clock
is read here: the deadline is shown with a controllable clock that counts its readings,
and memory with tracemalloc's peak.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from automate import dispatch, templating
from automate.models import RunStatus, StepRun, StepStatus, Workflow, WorkflowRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from automate_core.outbox import queue
from automate_core.providers.errors import AutomateError, ErrorCodes
from tests.testapp.engine_connectors import RecorderConnector

#: What a render may allocate at most here; the bombs below ask for 30 MB to 400 MB+.
MEMORY_BOUND = 8 * 1024 * 1024


def context(payload: Any = None) -> dict[str, Any]:
    return {
        "event": {"payload": payload if payload is not None else {}, "type": "t"},
        "steps": {},
        "workflow": {"key": "wf"},
        "trace_id": "trace-1",
    }


class CountingClock:
    """A clock that moves ``step`` seconds each time it is read, and counts the readings:
    a render stopped by its deadline shows how many checks it made before it stopped."""

    def __init__(self, step: float = 0.001) -> None:
        self.now, self.step, self.readings = 1000.0, step, 0

    def __call__(self) -> float:
        self.readings += 1
        self.now += self.step
        return self.now


@pytest.fixture
def clock(monkeypatch) -> CountingClock:
    fake = CountingClock()
    monkeypatch.setattr("automate.template_budget.clock", fake)
    return fake


def render_measured(source: str, payload: Any) -> tuple[AutomateError, int]:
    """Render ``source``; return the error it must raise and the peak memory it took."""
    tracemalloc.start()
    try:
        with pytest.raises(AutomateError) as info:
            templating.render_value(source, context(payload), where="config.input.text")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return info.value, peak


# -- Finding 4: no time or memory bound -----------------------------------------------------

#: The finding's literals; each is certain to break the budget, so saving refuses it.
LITERAL_BOMBS = [
    "{{ 9 ** (9 ** 9) }}",
    "{{ [1] * 10 ** 8 }}",
    "{{ 'x' * 400000000 }}",
    "{{ '%400000000s' % 'x' }}",
    "{{ '%.400000000f' % 1.5 }}",
    "{{ 'x'.center(400000000) }}",
    "{{ 'x'|center(400000000) }}",
    "{{ '{:400000000}'.format('x') }}",
    "{{ '%400000000s'|format('x') }}",
    "{% for i in range(10 ** 9) %}{{ i }}{% endfor %}",
    "{{ lipsum(10 ** 9) }}",
    "{{ [1]|batch(10 ** 9, 0)|list }}",
]


@pytest.mark.django_db
@pytest.mark.parametrize("source", LITERAL_BOMBS)
def test_workflow_author__template_bomb_literal_is_refused_at_save(source):
    with pytest.raises(AutomateError) as info:
        WorkflowService().create_workflow(
            name="Bomb",
            trigger="probe_source",
            steps=[
                {
                    "name": "Act",
                    "type": "connector_action",
                    "config": {"profile": "recorder", "action": "echo", "input": {"t": source}},
                }
            ],
        )
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert info.value.details["field"] == "steps[0].config.input.t"
    assert "breaks the rendering budget" in info.value.message
    assert not Workflow.objects.exists()


def test_workflow_author__bounded_expressions_still_save_and_render():
    source = "{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ range(5)|join(',') }} {{ '%5s'|format('x') }}"
    templating.validate_template(source)
    assert templating.render_string(source, context()) == "ababab 1024 0,1,2,3,4     x"


#: The same bombs with their size taken from the event: saving cannot see it, so they must
#: fail while rendering, before they allocate (old code: 30-40 MB each, and CPU for **).
DATA_BOMBS = [
    ("{{ event.payload.base ** event.payload.n }}", {"base": 9, "n": 10**6}),
    ("{{ [1] * event.payload.n }}", {"n": 5 * 10**6}),
    ("{{ 'x' * event.payload.n }}", {"n": 3 * 10**7}),
    ("{{ ('%' ~ event.payload.n ~ 's') % 'x' }}", {"n": 3 * 10**7}),
    ("{{ '%*s' % (event.payload.n, 'x') }}", {"n": 3 * 10**7}),
    ("{{ 'x'.center(event.payload.n) }}", {"n": 3 * 10**7}),
    ("{{ 'x'|center(event.payload.n) }}", {"n": 3 * 10**7}),
    ("{{ 'x'.ljust(event.payload.n) }}", {"n": 3 * 10**7}),
    ("{{ '{:{w}}'.format('x', w=event.payload.n) }}", {"n": 3 * 10**7}),
    ("{{ event.payload.s.replace('x', event.payload.s) }}", {"s": "x" * 6000}),
    ("{{ event.payload.s|wordwrap(1, wrapstring=event.payload.s) }}", {"s": "x" * 6000}),
    ("{{ event.payload.s.translate({120: event.payload.s}) }}", {"s": "x" * 6000}),
    ("{{ event.payload.s|replace('x', event.payload.s) }}", {"s": "x" * 6000}),
    ("{{ ['a', 'b']|map('center', event.payload.n)|list }}", {"n": 3 * 10**7}),
    ("{{ ([[1] * 100000] * event.payload.n)|sum(none, []) }}", {"n": 20}),
    # Shared references: two small lists that are 25 million items as text.
    ("{{ [[1] * 5000] * event.payload.n }}", {"n": 5000}),
    ("{% set a = [[1] * 5000] * event.payload.n %}{{ a|join(',') }}", {"n": 5000}),
    ("{% set a = [[1] * 5000] * event.payload.n %}x{{ a }}", {"n": 5000}),
    # Doubling through a namespace and ~, which no operator hook sees.
    (
        "{% set ns = namespace(s='x') %}{% for i in range(event.payload.n) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        {"n": 25},
    ),
    (
        "{% set ns = namespace(s='x'|safe) %}{% for i in range(event.payload.n) %}"
        "{% set ns.s = ns.s + (ns.s ~ '') %}{% endfor %}{{ ns.s|length }}",
        {"n": 25},
    ),
    # A block capturing many copies of one big string.
    (
        "{% set s = 'x' * 100000 %}{% set n = event.payload.n %}"
        "{% macro m() %}{% for i in range(n) %}{{ s }}{% endfor %}{% endmacro %}"
        "{{ m()|length }}",
        {"n": 300},
    ),
]


@pytest.mark.parametrize(("source", "payload"), DATA_BOMBS)
def test_workflow_author__template_bomb_from_data_fails_before_it_allocates(source, payload):
    error, peak = render_measured(source, payload)
    assert error.code == ErrorCodes.INVALID_ARGUMENT
    assert error.retryable is False
    assert error.details["field"] == "config.input.text"
    assert error.details["budget"] in ("size", "output")
    assert peak < MEMORY_BOUND


NESTED_LOOPS = (
    "{% for i in range(event.payload.n) %}{% for j in range(event.payload.n) %}"
    "{% endfor %}{% endfor %}done"
)


def test_workflow_author__nested_range_loops_stop_at_the_deadline_while_rendering(clock, settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "TEMPLATE_TIMEOUT_SECONDS": 1.0}
    # 1,000,000 empty iterations; the clock moves 1 ms a reading and the deadline is 1 s
    # away, so a deadline checked while rendering stops it after about 1,000 readings.
    with pytest.raises(AutomateError) as info:
        templating.render_value(NESTED_LOOPS, context({"n": 1000}), where="config.text")
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert info.value.details == {
        "field": "config.text",
        "budget": "time",
        "reason": "rendering took longer than its deadline",
    }
    assert 1000 <= clock.readings <= 1005


def test_workflow_author__a_template_within_its_deadline_renders(clock, settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "TEMPLATE_TIMEOUT_SECONDS": 1.0}
    assert templating.render_value(NESTED_LOOPS, context({"n": 10})) == "done"


@pytest.mark.django_db
def test_workflow_author__step_timeout_bounds_its_rendering(clock, settings, recorder_calls):
    settings.AUTOMATE = {**settings.AUTOMATE, "TEMPLATE_TIMEOUT_SECONDS": 30.0}
    WorkflowService().create_workflow(
        name="Slow template",
        trigger="probe_source",
        steps=[
            {
                "name": "Act",
                "type": "connector_action",
                "config": {"profile": "recorder", "action": "echo", "input": {"t": NESTED_LOOPS}},
                "retry": {"timeout_seconds": 0.5, "max_attempts": 1},
            }
        ],
    )
    queue.enqueue("probe_source", event_type="e", payload={"n": 1000}, trace_id="slow-1")
    assert dispatch.process_batch(dispatch.claim(10)) == {"dead": 1}
    record = StepRun.objects.get()
    assert record.status == StepStatus.FAILED
    assert record.error["code"] == "invalid_argument"
    assert record.error["details"]["budget"] == "time"
    assert 500 <= clock.readings <= 520  # the step's 0.5 s, not the setting's 30 s
    assert recorder_calls == []


# -- Finding 5: one bad template fails every workflow of the event ------------------------

RECURSIVE_MACRO = "{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}"


def deep(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("source", "payload"),
    [
        (RECURSIVE_MACRO, {}),
        # json.dumps recursing through a deeply nested payload: a real RecursionError.
        ("{{ event.payload.deep|tojson }}", {"deep": deep(100_000)}),
    ],
)
def test_workflow_author__recursion_is_an_error_of_the_template(source, payload):
    with pytest.raises(AutomateError) as info:
        templating.render_value({"text": source}, context(payload), where="config")
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert info.value.retryable is False
    assert info.value.details["field"] == "config.text"


@pytest.mark.django_db
def test_workflow_author__a_template_nested_too_deeply_to_parse_is_refused_at_save():
    deeply = "{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}"
    with pytest.raises(AutomateError) as info:
        WorkflowService().create_workflow(
            name="Deep",
            trigger="probe_source",
            steps=[{"name": "Check", "type": "filter", "config": {"condition": deeply}}],
        )
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert info.value.details["field"] == "steps[0].config.condition"
    assert "nests too deeply" in info.value.message
    assert not Workflow.objects.exists()


def test_workflow_author__memory_error_is_an_error_of_the_template(monkeypatch):
    def exhaust(value: Any) -> str:
        raise MemoryError

    filters = templating.environment().filters
    monkeypatch.setitem(filters, "exhaust", exhaust)
    with pytest.raises(AutomateError) as info:
        templating.render_value("{{ event.type|exhaust }}", context(), where="config.text")
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert info.value.message == "config.text: the template ran out of memory"


@pytest.fixture
def recorder_calls() -> Iterator[list]:
    RecorderConnector.calls.clear()
    yield RecorderConnector.calls
    RecorderConnector.calls.clear()


def drain_items(passes: int = 10) -> list[dict[str, int]]:
    """Process the outbox the way the embedded worker does, making each retry due at
    once, until nothing is left to claim."""
    results = []
    for _ in range(passes):
        OutboxItem.objects.filter(status="failed").update(available_at=timezone.now())
        items = dispatch.claim(10)
        if not items:
            break
        results.append(dispatch.process_batch(items))
    return results


@pytest.mark.django_db
def test_workflow_author__recursive_macro_fails_only_its_step_not_a_sibling_workflow(
    recorder_calls,
):
    def workflow(name: str, text: str) -> None:
        WorkflowService().create_workflow(
            name=name,
            trigger={"connector": "probe_source", "events": ["order"]},
            steps=[
                {
                    "name": "Act",
                    "type": "connector_action",
                    "config": {"profile": "recorder", "action": "echo", "input": {"t": text}},
                }
            ],
        )

    workflow("A bad template", RECURSIVE_MACRO)
    workflow("B healthy", "order {{ event.payload.n }}")
    queue.enqueue("probe_source", event_type="order", payload={"n": 7}, trace_id="sib-1")

    # One pass: A's run is dead (its event can be replayed), nothing is retried.
    assert drain_items() == [{"dead": 1}]
    assert recorder_calls == [("echo", {"t": "order 7"})]  # B's step ran exactly once
    runs = dict(WorkflowRun.objects.values_list("workflow__name", "status"))
    assert runs == {"A bad template": RunStatus.DEAD, "B healthy": RunStatus.COMPLETED}
    failed = StepRun.objects.get(run__workflow__name="A bad template")
    assert failed.status == StepStatus.FAILED
    assert failed.error["code"] == "invalid_argument"
    assert failed.error["details"]["field"] == "config.input.t"
    assert OutboxItem.objects.get().attempts == 1


# -- Finding 17 (templates): dynamic underscore access refused at save ---------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ event['_' ~ '_class__'] }}",
        "{{ event['__cla' + 'ss__'] }}",
        "{{ event|attr('_' * 2 ~ 'class__') }}",
        "{% set n = '__class__' %}{{ event[n] }}",
        "{% for n in ['__class__', '__init__'] %}{{ event|attr(n) }}{% endfor %}",
        "{{ event[event.type if event else '__class__'] }}",
        "{{ event.payload.items|map(attribute='__class__')|list }}",
        "{{ event.payload.items|selectattr('__class__')|list }}",
        "{{ event.payload.items|sort(attribute='a.__class__')|list }}",
    ],
)
def test_workflow_author__underscore_name_visible_without_data_is_refused_at_save(source):
    with pytest.raises(AutomateError) as info:
        templating.validate_template(source, where="config.q")
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert "names starting with '_'" in info.value.message


def test_workflow_author__underscore_name_from_data_is_refused_when_rendered():
    source = "{{ event[event.payload.name] }}"
    templating.validate_template(source)  # the name is data: nothing to see at save
    with pytest.raises(AutomateError) as info:
        templating.render_value(source, context({"name": "__class__"}), where="config.q")
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert "sandbox" in info.value.message
