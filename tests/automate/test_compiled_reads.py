"""A batch's hot reads are compiled to SQL once per connection (automate.compiled) and
then run with new values: what must hold is that they send the very text the ORM sends,
give what the QuerySet gives (converters, annotations, related objects, flat values),
are really taken from the cache, and fall back to the ORM whenever the cache cannot say
where a value goes.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from django.db.models import Q, QuerySet
from django.test.utils import CaptureQueriesContext

from automate import compiled, dispatch, runs, tasks
from automate.flow import matching
from automate.models import Workflow, WorkflowRun, WorkflowStep
from automate.services import WorkflowService
from automate.steps import StepContext, StepExecutor, StepResult
from automate.steps.base import StrictConfig
from automate.steps.registry import steps as step_registry
from automate_core.outbox import queue
from automate_core.outbox.models import OutboxItem, OutboxStatus

pytestmark = pytest.mark.django_db


class NoopStep(StepExecutor):
    key = "compiled_noop"
    config_model = StrictConfig
    idempotent = True

    def execute(self, config: StrictConfig, ctx: StepContext) -> StepResult:  # type: ignore[override]
        return StepResult(output={})


@pytest.fixture(autouse=True)
def noop():
    step_registry.register(NoopStep)
    yield
    step_registry.unregister("compiled_noop")


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test compiles its statements itself (the cache lives on the connection)."""
    connections["default"].__dict__.pop("_automate_compiled", None)
    yield
    connections["default"].__dict__.pop("_automate_compiled", None)


def _cached(key: object, count: int) -> object:
    return getattr(connection, "_automate_compiled", {}).get((key, count))


def _sql_of(queryset: QuerySet) -> tuple[list[str], list]:
    with CaptureQueriesContext(connection) as ctx:
        found = list(queryset)
    return [q["sql"] for q in ctx.captured_queries], found


def _enqueue(n: int, event_type: str = "pull_request") -> OutboxItem:
    return queue.enqueue(
        "github", event_type=event_type, payload={"n": n}, external_id=f"c-{n}", trace_id="t"
    ).item


def _workflow(name: str = "Compiled", events: tuple[str, ...] = ("pull_request",)) -> Workflow:
    return WorkflowService().create_workflow(
        name=name,
        trigger={"connector": "github", "events": list(events)},
        steps=[{"name": "Noop", "type": "compiled_noop", "config": {}}],
    )


def _fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def test_compiled__the_leased_read_sends_the_orm_text_and_gives_its_objects():
    _workflow()
    items = [_enqueue(n) for n in range(3)]
    claimed = dispatch.claim(3)
    runs.ensure_runs(claimed[0])  # one item with runs, two without: the annotation differs
    ids = [item.pk for item in claimed]
    orm_sql, expected = _sql_of(tasks._leased(*ids))
    with CaptureQueriesContext(connection) as ctx:
        first = compiled.fetch("leased", OutboxItem, tasks._leased, ids)
        again = compiled.fetch("leased", OutboxItem, tasks._leased, ids)
    assert [q["sql"] for q in ctx.captured_queries] == orm_sql * 2
    assert isinstance(_cached("leased", 3), compiled._Statement)
    for found in (first, again):
        assert [_fields(o) for o in found] == [_fields(o) for o in expected]
        # The annotation as the ORM converts it: a bool on SQLite too (not 1/0).
        assert [o.has_runs for o in found] == [True, False, False]
        assert all(o._state.adding is False and o._state.db == "default" for o in found)
    assert {o.pk for o in first} == {i.pk for i in items}


def test_compiled__a_batch_of_another_size_compiles_its_own_text():
    _workflow()
    for n in range(3):
        _enqueue(n)
    ids = [item.pk for item in dispatch.claim(3)]
    assert len(compiled.fetch("leased", OutboxItem, tasks._leased, ids[:1])) == 1
    assert len(compiled.fetch("leased", OutboxItem, tasks._leased, ids)) == 3
    assert isinstance(_cached("leased", 1), compiled._Statement)
    assert isinstance(_cached("leased", 3), compiled._Statement)


def test_compiled__the_task_takes_its_items_from_the_cached_text():
    _workflow()
    for n in range(2):
        _enqueue(n)
    claimed = dispatch.claim(2)
    counts = tasks.process_items([[i.pk, i.lease_token] for i in claimed])
    assert counts == {"done": 2}
    assert isinstance(_cached("leased", 2), compiled._Statement)
    assert isinstance(_cached("trigger_candidates", 1), compiled._Statement)
    assert isinstance(_cached("wait_for_event_configs", 0), compiled._Statement)


def test_compiled__trigger_candidates_are_the_orms():
    first = _workflow("A")
    _workflow("B", ("issues",))
    Workflow.objects.create(name="Off", key="off", enabled=False, trigger_connector="github")
    assert runs.matching_workflows("github", "pull_request") == [first]
    assert runs.matching_workflows("github", "pull_request") == [first]
    assert runs.matching_workflows("slack", "pull_request") == []
    assert isinstance(_cached("trigger_candidates", 1), compiled._Statement)
    orm_sql, _ = _sql_of(runs._candidates("github"))
    with CaptureQueriesContext(connection) as ctx:
        runs.matching_workflows("github", "pull_request")
    assert [q["sql"] for q in ctx.captured_queries] == orm_sql


def test_compiled__wait_for_event_configs_are_flat_values_with_their_json_converted():
    config = {"connector": "github", "event": "reply", "match": {"key": "{{ event.payload.k }}"}}
    WorkflowService().create_workflow(
        name="Waits",
        trigger={"connector": "github", "events": ["start"]},
        steps=[{"name": "Wait", "type": "wait_for_event", "config": config}],
    )
    kinds = {("github", "reply")}
    assert matching._path_sets(kinds) == {("github", "reply"): {("key",)}}
    assert matching._path_sets(kinds) == {("github", "reply"): {("key",)}}
    assert isinstance(_cached("wait_for_event_configs", 0), compiled._Statement)
    orm_sql, expected = _sql_of(matching._wait_configs())
    with CaptureQueriesContext(connection) as ctx:
        found = compiled.fetch("wait_for_event_configs", WorkflowStep, matching._wait_configs, [])
    assert [q["sql"] for q in ctx.captured_queries] == orm_sql
    assert found == expected
    assert isinstance(found[0], dict)


def test_compiled__select_related_objects_are_made_as_the_orm_makes_them():
    workflow = _workflow()
    item = _enqueue(1)
    made = runs.ensure_runs(item)

    def build(pk: int) -> QuerySet:
        return WorkflowRun.objects.filter(outbox_item=pk).select_related("workflow")

    for _ in range(2):
        (run,) = compiled.fetch("runs_with_workflow", WorkflowRun, build, [item.pk])
        assert run.pk == made[0].pk
        assert WorkflowRun.workflow.is_cached(run)
        assert run.workflow == workflow and run.workflow.name == "Compiled"
        assert run.workflow._state.db == "default" and run.workflow._state.adding is False
    assert isinstance(_cached("runs_with_workflow", 1), compiled._Statement)


def test_compiled__execute_wrappers_see_the_cached_statement():
    _workflow()
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append((sql, list(params)))
        return execute(sql, params, many, context)

    runs.matching_workflows("github", "x")  # compiled
    with connection.execute_wrapper(wrapper):
        runs.matching_workflows("github", "y")
    ((sql, params),) = seen
    assert params == ["github"] and "automate_workflow" in sql


def test_compiled__a_value_of_another_type_runs_the_queryset():
    _workflow()
    runs.matching_workflows("github", "pull_request")  # compiled for a str
    calls = []

    def build(key):
        calls.append(key)
        return runs._candidates(key)

    assert compiled.fetch("trigger_candidates", Workflow, build, [None]) == []
    assert calls == [None]  # built with the value itself: the ORM compiles IS NULL
    assert isinstance(_cached("trigger_candidates", 1), compiled._Statement)


def test_compiled__values_of_types_it_does_not_mark_are_never_cached():
    item = _enqueue(1)
    calls = []

    def build(when):
        calls.append(when)
        return OutboxItem.objects.filter(created_at__lte=when)

    assert compiled.fetch("by_date", OutboxItem, build, [item.created_at]) == [item]
    assert calls == [item.created_at]
    assert _cached("by_date", 1) is None


def test_compiled__a_value_its_lookup_prepares_is_not_cached_and_stays_correct():
    _enqueue(1)
    _enqueue(22)

    def build(part: str) -> QuerySet:  # contains: the parameter is "%part%", not the value
        return OutboxItem.objects.filter(external_id__contains=part).order_by("id")

    for part, expected in (("c-2", ["c-22"]), ("c-", ["c-1", "c-22"])):
        found = compiled.fetch("contains", OutboxItem, build, [part])
        assert [o.external_id for o in found] == expected
    assert _cached("contains", 1) is compiled._NOT_CACHED


def test_compiled__a_marker_that_appears_twice_is_not_cached():
    item = _enqueue(1)

    def build(pk: int) -> QuerySet:  # the same value twice: where would a new one go?
        return OutboxItem.objects.filter(Q(pk=pk) | Q(attempts=pk))

    def twice(pk: int) -> QuerySet:
        return OutboxItem.objects.filter(pk__in=[pk, pk])

    assert compiled.fetch("twice", OutboxItem, twice, [item.pk]) == [item]
    # In drops the repeat: the marker is there once, so this one may be cached.
    assert isinstance(_cached("twice", 1), compiled._Statement)
    assert compiled.fetch("union", OutboxItem, build, [item.pk]) == [item]
    assert _cached("union", 1) is compiled._NOT_CACHED


def test_compiled__querysets_it_cannot_make_objects_of_are_run_by_the_orm():
    workflow = _workflow()

    def prefetching(pk: int) -> QuerySet:
        return Workflow.objects.filter(pk=pk).prefetch_related("steps")

    def values(pk: int) -> QuerySet:
        return Workflow.objects.filter(pk=pk).values("name")

    for _ in range(2):
        (found,) = compiled.fetch("prefetching", Workflow, prefetching, [workflow.pk])
        assert len(found._prefetched_objects_cache["steps"]) == 1
        assert compiled.fetch("values", Workflow, values, [workflow.pk]) == [{"name": "Compiled"}]
    assert _cached("prefetching", 1) is compiled._NOT_CACHED
    assert _cached("values", 1) is compiled._NOT_CACHED


def test_compiled__an_empty_in_list_is_the_orms_empty_result():
    def build(*ids: int) -> QuerySet:
        return OutboxItem.objects.filter(pk__in=ids)

    with CaptureQueriesContext(connection) as ctx:
        assert compiled.fetch("empty", OutboxItem, build, []) == []
    assert ctx.captured_queries == []
    assert _cached("empty", 0) is compiled._NOT_CACHED


def test_compiled__the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(compiled, "MAX_STATEMENTS", 2)
    workflow = _workflow()
    for key in ("a", "b", "c"):
        assert compiled.fetch(key, Workflow, runs._candidates, ["github"]) == [workflow]
    assert set(connection._automate_compiled) == {("c", 1)}


@pytest.mark.django_db(transaction=True)
def test_compiled__each_thread_compiles_on_its_own_connection():
    workflow = _workflow()
    assert runs.matching_workflows("github", "pull_request") == [workflow]
    found = []

    def other() -> None:
        try:
            found.append(runs.matching_workflows("github", "pull_request"))
            own = connections["default"]
            found.append(
                own is not connection
                and isinstance(
                    own._automate_compiled[("trigger_candidates", 1)], compiled._Statement
                )
            )
        finally:
            connections.close_all()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert found == [[workflow], True]
    statement = _cached("trigger_candidates", 1)
    assert statement.compiler.connection is connections["default"]


def _leased_only(*ids: int) -> QuerySet:
    return OutboxItem.objects.filter(pk__in=ids, status=OutboxStatus.LEASED).order_by("id")


def test_compiled__a_status_in_the_filter_is_a_constant_of_the_text():
    """Only the ids are values: the status the ORM compiled stays as it was compiled."""
    _workflow()
    _enqueue(1)
    (item,) = dispatch.claim(1)
    assert compiled.fetch("leased_only", OutboxItem, _leased_only, [item.pk]) == [item]
    statement = _cached("leased_only", 1)
    assert OutboxStatus.LEASED in statement.constants
    assert statement.params([41]).count(41) == 1


def test_process_items__skips_an_item_no_longer_leased_under_its_token():
    """The batch's read selects by id alone: an item settled meanwhile (same token, no
    longer leased) is skipped, as one leased again under another token is."""
    _workflow()
    for n in range(3):
        _enqueue(n)
    done, other, mine = dispatch.claim(3)
    OutboxItem.objects.filter(pk=done.pk).update(status=OutboxStatus.DONE)
    OutboxItem.objects.filter(pk=other.pk).update(lease_token="another-worker")
    leases = [[i.pk, i.lease_token] for i in (done, other, mine)]
    assert tasks.process_items(leases) == {"done": 1, "skipped": 2}
    assert OutboxItem.objects.get(pk=mine.pk).status == OutboxStatus.DONE
    # By primary key alone: no partial index of leased rows for the planner to pick.
    assert OutboxStatus.LEASED not in _cached("leased", 3).constants


def _locked(pk: int) -> QuerySet:
    return Workflow.objects.select_for_update().filter(pk=pk)


def test_compiled__a_locking_read_outside_a_transaction_is_the_orms_error():
    from django.db import transaction

    workflow = _workflow()
    with transaction.atomic():
        for _ in range(2):
            assert compiled.fetch("locked", Workflow, _locked, [workflow.pk], for_write=True) == [
                workflow
            ]
    statement = _cached("locked", 1)
    assert isinstance(statement, compiled._Statement)
    assert statement.locks == connection.features.has_select_for_update
    assert ("FOR UPDATE" in statement.sql) == connection.features.has_select_for_update


@pytest.mark.django_db(transaction=True)
def test_compiled__a_cached_locking_read_in_autocommit_raises_as_the_orm_does():
    from django.db import transaction
    from django.db.transaction import TransactionManagementError

    workflow = _workflow()
    with transaction.atomic():
        compiled.fetch("locked", Workflow, _locked, [workflow.pk], for_write=True)
    assert isinstance(_cached("locked", 1), compiled._Statement)
    if not connection.features.has_select_for_update:  # SQLite: the ORM drops the lock
        assert compiled.fetch("locked", Workflow, _locked, [workflow.pk], for_write=True)
        return
    with pytest.raises(TransactionManagementError):
        compiled.fetch("locked", Workflow, _locked, [workflow.pk], for_write=True)


@pytest.mark.django_db(transaction=True)
def test_compiled__an_event_wins_its_wait_through_the_cached_read_of_the_waits():
    config = {"connector": "github", "event": "reply", "match": {"k": "{{ event.payload.k }}"}}
    WorkflowService().create_workflow(
        name="Waits",
        trigger={"connector": "github", "events": ["start"]},
        steps=[
            {"name": "Wait", "type": "wait_for_event", "config": config},
            {"name": "Then", "type": "compiled_noop", "config": {}},
        ],
    )

    def send(event_type: str, n: int, key: str) -> None:
        queue.enqueue(
            "github",
            event_type=event_type,
            payload={"k": key},
            external_id=f"{event_type}-{n}",
            trace_id="t",
        )

    def drain() -> dict:
        counts: dict = {}
        while items := dispatch.claim(10):
            for k, v in tasks.process_items([[i.pk, i.lease_token] for i in items]).items():
                counts[k] = counts.get(k, 0) + v
        return counts

    for n in range(2):
        send("start", n, f"k{n}")
    drain()  # parked, and their first timers' looks
    assert WorkflowRun.objects.filter(status="waiting").count() == 2
    for n in range(2):
        send("reply", n, f"k{n}")
    drain()
    assert isinstance(_cached(("event_waits", (1, 1)), 4), compiled._Statement)
    assert WorkflowRun.objects.filter(status="completed").count() == 2
