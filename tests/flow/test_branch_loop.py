"""``branch`` and ``for_each``: what runs, what is recorded, and what a crash resumes."""

from __future__ import annotations

import pytest

from automate.models import RunStatus, StepRun, WorkflowStep
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from automate_core.providers.errors import AutomateError
from tests.flow.helpers import action, records, start

pytestmark = pytest.mark.django_db


def branch(name, condition, then=(), otherwise=()):
    return {
        "name": name,
        "type": "branch",
        "config": {"if": condition, "then": list(then), "else": list(otherwise)},
    }


def loop(name, items, steps, **extra):
    return {"name": name, "type": "for_each", "config": {"items": items, "steps": steps, **extra}}


# -- branch --------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "took"), [(5000, "then"), (10, "else")])
def test_branch__runs_one_side_and_records_only_it(drain, recorder_calls, amount, took):
    run = start(
        [
            branch(
                "Big?",
                "{{ event.payload.amount > 1000 }}",
                then=[action("Ticket", input_data={"a": "{{ event.payload.amount }}"})],
                otherwise=[action("Slack", input_data={"a": 1})],
            ),
            action("After", input_data={"took": "{{ steps['Big?'].output.took }}"}),
        ],
        {"amount": amount},
    )
    assert drain() == {"done": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    taken = "Ticket" if took == "then" else "Slack"
    assert records(run) == [
        ("Big?", "", 1, "succeeded"),
        (taken, "", 1, "succeeded"),
        ("After", "", 1, "succeeded"),
    ]
    assert run.step_runs.get(step__name="Big?").output == {"took": took}
    assert recorder_calls[-1] == ("echo", {"took": took})
    assert len(recorder_calls) == 2


def test_branch__a_condition_that_is_not_a_boolean_fails_naming_step_and_field(drain):
    run = start(
        [branch("Big?", "{{ event.payload.amount }}", then=[action("T")])], {"amount": "yes"}
    )
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    assert run.error["code"] == "invalid_argument"
    assert "Big?" in run.error["message"] and "config.if" in run.error["message"]
    assert run.error["details"]["field"] == "config.if"
    assert records(run) == [("Big?", "", 1, "failed")]


def test_branch__empty_else_goes_on(drain):
    run = start([branch("B", "{{ false }}", then=[action("T")]), action("Next")])
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert [r[0] for r in records(run)] == ["B", "Next"]


def test_branch__a_filter_inside_stops_the_run(drain):
    run = start(
        [
            branch(
                "B", True, then=[{"name": "F", "type": "filter", "config": {"condition": False}}]
            ),
            action("Never"),
        ]
    )
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.FILTERED
    assert [r[0] for r in records(run)] == ["B", "F"]


# -- for_each ------------------------------------------------------------------------------


def test_for_each__runs_steps_per_item_in_order_with_item_and_loop_index(drain, recorder_calls):
    run = start(
        [
            loop(
                "Lines",
                "{{ event.payload.lines }}",
                [
                    action(
                        "Reserve", input_data={"sku": "{{ line.sku }}", "i": "{{ loop.index }}"}
                    ),
                    action("Note", input_data={"r": "{{ steps.Reserve.output.echo.sku }}"}),
                ],
                **{"as": "line"},
            ),
            action("Total", input_data={"n": "{{ steps.Lines.output.count }}"}),
        ],
        {"lines": [{"sku": "a"}, {"sku": "b"}, {"sku": "c"}]},
    )
    assert drain() == {"done": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    output = run.step_runs.get(step__name="Lines").output
    assert output["count"] == 3
    assert output["results"] == [
        {"Reserve": {"echo": {"sku": s, "i": i}}, "Note": {"echo": {"r": s}}}
        for i, s in enumerate("abc")
    ]
    assert records(run) == [
        ("Lines", "", 1, "succeeded"),
        ("Reserve", "0", 1, "succeeded"),
        ("Note", "0", 1, "succeeded"),
        ("Reserve", "1", 1, "succeeded"),
        ("Note", "1", 1, "succeeded"),
        ("Reserve", "2", 1, "succeeded"),
        ("Note", "2", 1, "succeeded"),
        ("Total", "", 1, "succeeded"),
    ]
    assert recorder_calls[-1] == ("echo", {"n": 3})


def test_for_each__nested_loops_record_both_indexes(drain):
    run = start(
        [
            loop(
                "Outer",
                [[1, 2], [3]],
                [
                    loop(
                        "Inner",
                        "{{ row }}",
                        [action("Cell", input_data={"v": "{{ cell }}"})],
                        **{"as": "cell"},
                    )
                ],
                **{"as": "row"},
            )
        ]
    )
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    cells = [
        (p, o["echo"]["v"])
        for n, p, o in StepRun.objects.filter(run=run, step__name="Cell")
        .order_by("id")
        .values_list("step__name", "path", "output")
    ]
    assert cells == [("0.0", 1), ("0.1", 2), ("1.0", 3)]
    assert run.step_runs.get(step__name="Outer").output["results"][1] == {
        "Inner": {"count": 1, "results": [{"Cell": {"echo": {"v": 3}}}]}
    }


def test_for_each__more_items_than_max_items_fails_before_any_iteration(drain, recorder_calls):
    run = start(
        [loop("L", "{{ event.payload.xs }}", [action("A")], max_items=2)], {"xs": [1, 2, 3]}
    )
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    assert run.error["code"] == "invalid_argument"
    assert "max_items" in run.error["message"] and "'L'" in run.error["message"]
    assert recorder_calls == []
    assert records(run) == [("L", "", 1, "failed")]


def test_for_each__items_that_are_not_a_list_fail_naming_step_and_field(drain):
    run = start([loop("L", "{{ event.payload.xs }}", [action("A")])], {"xs": "abc"})
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    assert run.error["details"] == {"field": "config.items", "step": "L"}
    assert "it must be a list" in run.error["message"]


def test_for_each__empty_list_gives_count_zero(drain):
    run = start([loop("L", [], [action("A")])])
    drain()
    assert StepRun.objects.get(run=run, step__name="L").output == {"count": 0, "results": []}


def test_for_each__a_retry_resumes_at_the_failed_iteration(drain, recorder_calls):
    """Iteration 1's flaky step fails once: the retry reruns nothing of iteration 0 and
    only the failed step of iteration 1 (its non-idempotent Charge is not repeated)."""
    run = start(
        [
            loop(
                "L",
                ["a", "b", "c"],
                [
                    action("Charge", "record", {"event": "{{ item }}"}),
                    action("Flaky", "flaky", {"failures": 1}, backoff_seconds=0.01),
                ],
            )
        ]
    )
    from tests.engine_support import CountingServer

    with CountingServer() as target:
        from automate.models import ConnectionProfile

        ConnectionProfile.objects.filter(key="recorder").delete()
        ConnectionProfile.objects.create(
            key="recorder", connector_key="recorder", config={"url": target.url}
        )
        drain()
        drain(due=True)
        drain(due=True)
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED, run.error
    assert dict(target.counts) == {"a": 1, "b": 1, "c": 1}
    flaky = [r for r in records(run) if r[0] == "Flaky"]
    assert flaky[:2] == [("Flaky", "0", 1, "failed"), ("Flaky", "0", 2, "succeeded")]


# -- validation ----------------------------------------------------------------------------


def create(steps, **kwargs):
    return WorkflowService().create_workflow(name="V", steps=steps, **kwargs)


def test_validation__nested_configs_are_validated_like_top_level_ones():
    with pytest.raises(AutomateError) as exc:
        create([branch("B", True, then=[{"name": "X", "type": "filter", "config": {}}])])
    assert exc.value.details["field"] == "steps[0].config.then[0].config.condition"
    assert exc.value.details["step"] == "X"


def test_validation__step_names_are_unique_across_nesting():
    with pytest.raises(AutomateError, match="unique"):
        create([action("A"), loop("L", [1], [action("A")])])


def test_validation__nested_templates_may_read_item_and_loop_only_inside_the_loop():
    create([loop("L", [1], [action("A", input_data={"x": "{{ item }} {{ loop.index }}"})])])
    with pytest.raises(AutomateError, match="unknown name"):
        create([action("A", input_data={"x": "{{ item }}"})])


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (
            {"if": "yes", "then": [{"name": "A", "type": "filter", "config": {"condition": True}}]},
            "config.if",
        ),
        ({"if": True}, "config.then"),
    ],
)
def test_validation__branch_refusals(config, field):
    with pytest.raises(AutomateError) as exc:
        create([{"name": "B", "type": "branch", "config": config}])
    assert exc.value.details["field"] == f"steps[0].{field}"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"as": "event"}, "config.as"),
        ({"as": "not a name"}, "config.as"),
        ({"max_items": 10**9}, "config.max_items"),
        ({"max_items": 0}, "config.max_items"),
        ({"items": 5}, "config.items"),
        ({"steps": []}, "config.steps"),
    ],
)
def test_validation__for_each_refusals(extra, field):
    config = {"items": [1], "steps": [action("A")], **extra}
    with pytest.raises(AutomateError) as exc:
        create([{"name": "L", "type": "for_each", "config": config}])
    assert exc.value.details["field"] == f"steps[0].{field}"


def test_validation__nesting_deeper_than_the_setting_is_refused(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "FLOW_MAX_DEPTH": 2}
    create([branch("B1", True, then=[branch("B2", True, then=[action("A")])])])
    with pytest.raises(AutomateError, match="FLOW_MAX_DEPTH"):
        create(
            [
                branch(
                    "C1",
                    True,
                    then=[branch("C2", True, then=[branch("C3", True, then=[action("Z")])])],
                )
            ]
        )


def test_validation__nested_steps_are_saved_under_their_parent_and_shown_as_written():
    wf = create([branch("B", True, then=[action("T")], otherwise=[action("E")]), action("Z")])
    rows = {s.name: s for s in WorkflowStep.objects.filter(workflow=wf)}
    assert rows["T"].parent == rows["B"] and rows["T"].block == "then"
    assert rows["E"].block == "else" and rows["Z"].parent is None
    assert [s.name for s in wf.current_steps()] == ["B", "Z"]
    assert rows["B"].config["then"][0]["name"] == "T"


def test_limit__steps_per_run(drain, settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "FLOW_MAX_STEPS_PER_RUN": 5}
    run = start([loop("L", list(range(10)), [action("A")])])
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    assert "FLOW_MAX_STEPS_PER_RUN" in run.error["message"]
    assert StepRun.objects.filter(run=run).count() == 5
    assert OutboxItem.objects.get().status == "dead"
