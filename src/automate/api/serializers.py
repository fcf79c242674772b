"""Serializers of the REST API; workflows are written through WorkflowService."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from automate.connections import find_connection
from automate.flow.definition import on_failure_steps, step_dict
from automate.flow.tree import run_tree
from automate.models import API_SOURCE_PREFIX, Schedule, StepRun, Workflow, WorkflowRun
from automate.services import UNCHANGED, WorkflowService
from automate_core.outbox.models import OutboxItem
from automate_core.providers.errors import AutomateError


def as_validation_error(exc: AutomateError) -> serializers.ValidationError:
    """An INVALID_ARGUMENT from the service as a 400 keyed by the field's top name."""
    field = str(exc.details.get("field") or "non_field_errors")
    root = field.split("[", 1)[0].split(".", 1)[0]
    return serializers.ValidationError({root: [exc.message]}, code=exc.code.value)


class StepSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    type = serializers.CharField(max_length=100)
    config = serializers.JSONField(required=False, default=dict)
    retry = serializers.DictField(required=False)


class TriggerSerializer(serializers.Serializer):
    """``{"connector", "events"}``, or a schedule: ``{"schedule", "timezone"}`` or
    ``{"every"}``, each with an optional ``catch_up``; WorkflowService checks which."""

    connector = serializers.CharField(max_length=100, required=False)
    events = serializers.ListField(child=serializers.CharField(max_length=200), required=False)
    schedule = serializers.CharField(max_length=200, required=False)
    timezone = serializers.CharField(max_length=64, required=False)
    every = serializers.IntegerField(required=False)
    catch_up = serializers.ChoiceField(choices=["latest", "none", "all"], required=False)


class WorkflowSerializer(serializers.ModelSerializer):
    key = serializers.SlugField(max_length=100, required=False)
    trigger = TriggerSerializer(required=False, allow_null=True)
    steps = StepSerializer(many=True, allow_empty=False)
    on_failure = StepSerializer(many=True, required=False)

    class Meta:
        model = Workflow
        fields = [
            "key", "name", "description", "enabled", "trigger", "steps", "on_failure",
            "version", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["version", "created_at", "updated_at"]

    def to_representation(self, instance: Workflow) -> dict[str, Any]:
        trigger = None
        schedule = Schedule.objects.filter(workflow=instance).first()
        if schedule is not None:
            trigger = schedule.spec().as_trigger()
        elif instance.trigger_connector:
            trigger = {
                "connector": instance.trigger_connector,
                "events": instance.trigger_event_types,
            }
        return {
            "key": instance.key,
            "name": instance.name,
            "description": instance.description,
            "enabled": instance.enabled,
            "trigger": trigger,
            "steps": [step_dict(s) for s in instance.current_steps()],
            "on_failure": on_failure_steps(instance),
            "version": instance.version,
            "created_at": serializers.DateTimeField().to_representation(instance.created_at),
            "updated_at": serializers.DateTimeField().to_representation(instance.updated_at),
        }

    def validate_key(self, value: str) -> str:
        if self.instance is not None and value != self.instance.key:
            raise serializers.ValidationError("a workflow's key cannot change")
        return value

    def create(self, validated: dict[str, Any]) -> Workflow:
        try:
            return WorkflowService().create_workflow(
                name=validated["name"],
                steps=[dict(s) for s in validated["steps"]],
                trigger=_trigger(validated.get("trigger")),
                key=validated.get("key"),
                description=validated.get("description", ""),
                enabled=validated.get("enabled", True),
                on_failure=_steps(validated.get("on_failure")),
            )
        except AutomateError as exc:
            raise as_validation_error(exc) from None

    def update(self, instance: Workflow, validated: dict[str, Any]) -> Workflow:
        steps = validated.get("steps")
        try:
            return WorkflowService().update_workflow(
                instance,
                name=validated.get("name"),
                steps=[dict(s) for s in steps] if steps is not None else None,
                trigger=_trigger(validated["trigger"]) if "trigger" in validated else UNCHANGED,
                description=validated.get("description"),
                enabled=validated.get("enabled"),
                on_failure=_steps(validated.get("on_failure")),
            )
        except AutomateError as exc:
            raise as_validation_error(exc) from None


def _steps(value: list[Any] | None) -> list[dict[str, Any]] | None:
    return [dict(s) for s in value] if value is not None else None


def _trigger(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return dict(value) if value else None


class StepRunSerializer(serializers.ModelSerializer):
    step = serializers.CharField(source="step.name", read_only=True)
    type = serializers.CharField(source="step.type", read_only=True)
    # A plain string: one status enum per schema (the run's) keeps the schema unambiguous.
    status = serializers.CharField(read_only=True)

    class Meta:
        model = StepRun
        fields = [
            "step", "type", "path", "attempt", "status", "input", "output", "error",
            "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class RunSerializer(serializers.ModelSerializer):
    workflow = serializers.SlugRelatedField(slug_field="key", read_only=True)
    outbox_item = serializers.PrimaryKeyRelatedField(read_only=True)
    parent_run = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = WorkflowRun
        fields = [
            "id", "workflow", "workflow_version", "status", "trace_id", "outbox_item",
            "parent_run", "error", "replay_count", "created_at", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class RunDetailSerializer(RunSerializer):
    steps = StepRunSerializer(source="step_runs", many=True, read_only=True)
    tree = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "event", "steps", "tree"]
        read_only_fields = fields

    @extend_schema_field(
        {"type": "array", "items": {"type": "object", "additionalProperties": True}}
    )
    def get_tree(self, run: WorkflowRun) -> list[dict[str, Any]]:
        """The steps that ran as a tree: branches taken, iterations, waits, children."""
        return run_tree(run)


class EventSerializer(serializers.Serializer):
    """An event posted to the API; it is queued exactly as a verified webhook would be."""

    connector = serializers.CharField(max_length=100)
    type = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    id = serializers.CharField(max_length=255, required=False, allow_null=True, default=None)
    payload = serializers.JSONField(required=False, allow_null=True, default=None)

    def validate_connector(self, value: str) -> str:
        column = OutboxItem._meta.get_field("connector_key").max_length or 100
        room = column - len(API_SOURCE_PREFIX)
        if len(value) > room:  # stored as "api:<key>"
            raise serializers.ValidationError(
                f"API events can be posted for connection keys of up to {room} characters"
            )
        connection = find_connection(value)
        if connection is None or not connection.enabled:
            raise serializers.ValidationError(f"no enabled connection named {value!r}")
        return value


class ManualRunSerializer(serializers.Serializer):
    type = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    payload = serializers.JSONField(required=False, allow_null=True, default=None)


class AcceptedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    trace_id = serializers.CharField()
    duplicate = serializers.BooleanField(required=False)


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
