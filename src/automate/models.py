"""Models of the ``automate`` app."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models, router, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from automate_connectors.base import validate_config
from automate_connectors.registry import NotRegistered, get_connector
from automate_core.crypto import SEALED_PREFIX as ENCRYPTED_PREFIX
from automate_core.crypto import seal
from automate_core.providers.errors import AutomateError
from automate_core.secrets import is_reference, parse_reference

key_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9_\-]{0,99}$",
    _("Use lower-case letters, digits, '_' and '-' (it appears in the webhook URL)."),
)


class ConnectionProfile(models.Model):
    """How this project talks to one account of a connector.

    ``key`` is the segment of the webhook URL (``/webhooks/<key>/``) and the name workflow
    steps use; ``connector_key`` names the registered connector class. Webhook secrets are
    ``secret://NAME`` references or values encrypted at rest, newest first; every one is
    tried, so a secret can be rotated without losing deliveries.
    """

    key = models.CharField(_("key"), max_length=100, unique=True, validators=[key_validator])
    connector_key = models.CharField(_("connector"), max_length=100)
    name = models.CharField(_("name"), max_length=200, blank=True, default="")
    enabled = models.BooleanField(_("enabled"), default=True)
    config = models.JSONField(_("configuration"), default=dict, blank=True)
    webhook_secrets = models.JSONField(
        _("webhook secrets"), default=list, blank=True, editable=False
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("connection profile")
        verbose_name_plural = _("connection profiles")
        ordering = ["key"]

    def __str__(self) -> str:
        return self.name or self.key

    def save(self, *args, **kwargs) -> None:
        # Config is validated against the connector's schema however the row is written.
        self.full_clean(validate_unique=False)
        super().save(*args, **kwargs)

    # -- Validation ----------------------------------------------------------------------

    def clean(self) -> None:
        try:
            cls = get_connector(self.connector_key)
        except NotRegistered as exc:
            raise ValidationError({"connector_key": str(exc)}) from None
        if not isinstance(self.config, dict):
            raise ValidationError({"config": _("The configuration must be a JSON object.")})
        try:
            validate_config(cls, self.config)
        except AutomateError as exc:
            raise ValidationError({"config": exc.message}) from None
        for value in self.webhook_secrets:
            if not isinstance(value, str) or not (
                value.startswith(ENCRYPTED_PREFIX) or is_reference(value)
            ):
                raise ValidationError(
                    {"webhook_secrets": _("Store secrets as secret:// references or encrypted.")}
                )
            if is_reference(value):
                try:
                    parse_reference(value)
                except ValueError as exc:
                    raise ValidationError({"webhook_secrets": str(exc)}) from None

    # -- Secrets -------------------------------------------------------------------------

    def add_webhook_secret(self, value: str) -> None:
        """Add a secret (a ``secret://`` reference, or a value to encrypt) as the newest."""
        stored = seal(value)
        self.webhook_secrets = [stored, *[s for s in self.webhook_secrets if s != stored]]

    def remove_webhook_secret(self, index: int) -> None:
        secrets = list(self.webhook_secrets)
        del secrets[index]
        self.webhook_secrets = secrets

    def describe_webhook_secrets(self) -> list[str]:
        """Safe labels for display: references as written, encrypted values masked."""
        return [
            value if is_reference(value) else f"encrypted value #{i + 1}"
            for i, value in enumerate(self.webhook_secrets)
        ]


# -- Workflows ---------------------------------------------------------------------------

#: The connector key of outbox items created for manual and API runs of one workflow. It
#: cannot be a connection key (those start with a letter or digit), so no trigger matches it.
MANUAL_CONNECTOR_KEY = "_manual"
#: Events posted to the REST API are stored under ``api:<connection key>``: they start the
#: connection's workflows, but their ids never meet a webhook's (connection keys hold no
#: ":"), so an API user cannot make a genuine delivery a duplicate.
API_SOURCE_PREFIX = "api:"


def trigger_key(connector_key: str) -> str:
    """The connection key whose triggers an outbox item's source matches."""
    return connector_key.removeprefix(API_SOURCE_PREFIX)


#: The connector key of the outbox items of schedule ticks (:mod:`automate.schedules`).
SCHEDULE_CONNECTOR_KEY = "_schedule"
#: The header an :func:`automate.emit` row carries (``{":source": "emit"}``). No request
#: can send it, as a header name holds no ":" (HTTP/2's ":" pseudo-headers never reach
#: Django), so a webhook's stored headers never claim to be emitted.
EMIT_SOURCE_HEADER = ":source"


def event_source(item: Any) -> str:
    """Where an outbox item's event came from, as ``event.source`` shows it: ``"api"``,
    ``"manual"``, ``"schedule"``, ``"emit"`` or ``"webhook"`` (a verified delivery)."""
    key = item.connector_key
    if key.startswith(API_SOURCE_PREFIX):
        return "api"
    if key == MANUAL_CONNECTOR_KEY:
        return "manual"
    if key == SCHEDULE_CONNECTOR_KEY:
        return "schedule"
    if (item.headers or {}).get(EMIT_SOURCE_HEADER) == "emit":
        return "emit"
    return "webhook"


#: The connector key of the outbox items that resume a parked run (a timer, a matched
#: event, a finished child workflow): see :mod:`automate.flow.parking`.
RESUME_CONNECTOR_KEY = "_resume"


class Workflow(models.Model):
    """A named list of steps run for every event its trigger matches.

    Steps belong to a version: :meth:`WorkflowService.update_workflow` writes a new version
    and bumps ``version``, while runs already started keep reading the steps of theirs. A
    workflow without ``trigger_connector`` only runs manually or through the API.
    """

    name = models.CharField(_("name"), max_length=200)
    key = models.SlugField(_("key"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True, default="")
    enabled = models.BooleanField(_("enabled"), default=True)
    trigger_connector = models.CharField(
        _("trigger connector"),
        max_length=100,
        blank=True,
        default="",
        help_text=_("Connection key whose events start this workflow; empty: manual only."),
    )
    trigger_event_types = models.JSONField(
        _("trigger event types"),
        default=list,
        blank=True,
        help_text=_('Event types to run for ("*" wildcards allowed); empty: every event.'),
    )
    version = models.PositiveIntegerField(_("version"), default=1)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("workflow")
        verbose_name_plural = _("workflows")
        ordering = ["name"]
        indexes = [
            models.Index(fields=["trigger_connector", "enabled"], name="automate_wf_trigger")
        ]

    def __str__(self) -> str:
        return self.name

    def current_steps(self) -> models.QuerySet[WorkflowStep]:
        """The current version's top-level steps (nested ones live in their parent's config)."""
        return self.steps_of(self.version)

    def steps_of(self, version: int) -> models.QuerySet[WorkflowStep]:
        """The top-level steps of ``version``, in order."""
        return self.steps.filter(version=version, parent__isnull=True, block="").order_by(
            "position"
        )

    def all_steps_of(self, version: int) -> models.QuerySet[WorkflowStep]:
        """Every step of ``version``: top-level, nested and ``on_failure``, in order."""
        return self.steps.filter(version=version).order_by("position")


def touch_workflows(using: str, ids: Any) -> None:
    """Mark workflows (``ids``: a list or a subquery) as changed: their ``updated_at`` is
    part of the key under which worker processes keep a version's steps
    (:func:`automate.batch.step_tree`), and every batch reads it with its runs, so each
    process reads the steps again. ``update()``: a workflow's save would send signals."""
    Workflow.objects.using(using).filter(pk__in=ids).update(updated_at=timezone.now())


class WorkflowStepQuerySet(models.QuerySet["WorkflowStep"]):
    """``update()`` and ``delete()`` of steps mark their workflows changed, in the same
    transaction (``bulk_update()`` goes through ``update()``)."""

    def update(self, **kwargs: Any) -> int:
        with transaction.atomic(using=self.db, savepoint=False):
            # First: the filter may name the very fields the update changes.
            touch_workflows(self.db, self.values("workflow_id"))
            return super().update(**kwargs)

    update.alters_data = True  # type: ignore[attr-defined]

    def delete(self) -> tuple[int, dict[str, int]]:
        with transaction.atomic(using=self.db, savepoint=False):
            touch_workflows(self.db, self.values("workflow_id"))
            return super().delete()

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]


class WorkflowStep(models.Model):
    """One step of one version of a workflow, with its own retry policy.

    A step nested in a ``branch`` or ``for_each`` has a ``parent`` and the ``block`` of
    the parent it belongs to (``then``, ``else``, ``steps``); the workflow's
    ``on_failure`` steps have no parent and the block ``on_failure``. ``position`` orders
    every step of a version, nested ones included, depth first.

    ``WorkflowService`` writes a version's steps once; editing them in place (a
    ``save()`` of an existing row, ``update()``, ``bulk_update()``, ``delete()``) marks
    the workflow changed, so every worker runs the edited steps from its next batch (see
    "Versions" in docs/workflows.md). A new row is a version being written: the
    workflow's save that publishes the version marks it.
    """

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="steps")
    version = models.PositiveIntegerField(_("version"))
    position = models.PositiveIntegerField(_("position"))
    name = models.CharField(_("name"), max_length=200)
    type = models.CharField(_("type"), max_length=100)
    config = models.JSONField(_("configuration"), default=dict, blank=True)
    max_attempts = models.PositiveIntegerField(_("max attempts"), default=3)
    backoff_seconds = models.FloatField(_("backoff base (s)"), default=2.0)
    max_backoff_seconds = models.FloatField(_("backoff cap (s)"), default=300.0)
    timeout_seconds = models.FloatField(_("timeout (s)"), default=30.0)
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
    )
    block = models.CharField(_("block"), max_length=20, blank=True, default="")

    objects = WorkflowStepQuerySet.as_manager()

    class Meta:
        verbose_name = _("workflow step")
        verbose_name_plural = _("workflow steps")
        ordering = ["workflow", "version", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "version", "position"], name="automate_step_position"
            ),
            models.UniqueConstraint(
                fields=["workflow", "version", "name"], name="automate_step_name"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is None:  # a new row: no worker has read it yet
            super().save(*args, **kwargs)
            return
        using = kwargs.get("using") or router.db_for_write(WorkflowStep, instance=self)
        with transaction.atomic(using=using, savepoint=False):
            super().save(*args, **kwargs)
            touch_workflows(using, [self.workflow_id])  # type: ignore[attr-defined]

    def delete(
        self, using: str | None = None, keep_parents: bool = False
    ) -> tuple[int, dict[str, int]]:
        using = using or router.db_for_write(WorkflowStep, instance=self)
        with transaction.atomic(using=using, savepoint=False):
            touch_workflows(using, [self.workflow_id])  # type: ignore[attr-defined]
            return super().delete(using, keep_parents)


class RunStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    RUNNING = "running", _("Running")
    RETRYING = "retrying", _("Waiting to retry")
    COMPLETED = "completed", _("Completed")
    FILTERED = "filtered", _("Stopped by a filter")
    DEAD = "dead", _("Dead letter")
    WAITING = "waiting", _("Waiting (parked)")
    CANCELLED = "cancelled", _("Cancelled")


#: A run in one of these states is never executed again (replay resets dead runs).
FINISHED_RUN_STATUSES = (
    RunStatus.COMPLETED,
    RunStatus.FILTERED,
    RunStatus.DEAD,
    RunStatus.CANCELLED,
)


def _elapsed(run: Any) -> timedelta | None:
    """From ``started_at`` to ``finished_at``; ``None`` until both are known."""
    if run.started_at and run.finished_at:
        return run.finished_at - run.started_at
    return None


class WorkflowRun(models.Model):
    """One execution of one workflow version for one event (unique per item and workflow)."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="runs")
    workflow_version = models.PositiveIntegerField(_("workflow version"))
    outbox_item = models.ForeignKey(
        "automate_core.OutboxItem",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="workflow_runs",
    )
    event = models.JSONField(_("event"), default=dict, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=RunStatus.choices, default=RunStatus.PENDING
    )
    trace_id = models.CharField(_("trace id"), max_length=64, db_index=True)
    error = models.JSONField(_("error"), null=True, blank=True)
    replay_count = models.PositiveIntegerField(
        _("replays"), default=0, help_text=_("Each replay gives every step a fresh budget.")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    # Control flow (automate.flow): the run that started this one with a ``workflow`` step;
    # the outbox item that resumed it after it parked (it carries the run from then on);
    # when cancel_run asked a running run to stop at its next step boundary.
    parent_run = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="child_runs"
    )
    resume_item = models.ForeignKey(
        "automate_core.OutboxItem",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="resumed_runs",
    )
    cancel_requested_at = models.DateTimeField(_("cancel requested at"), null=True, blank=True)

    class Meta:
        verbose_name = _("workflow run")
        verbose_name_plural = _("workflow runs")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["outbox_item", "workflow"],
                condition=models.Q(outbox_item__isnull=False),
                name="automate_run_once_per_item",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="automate_run_status"),
            # The admin overview's per-minute charts read recent runs by this.
            models.Index(fields=["finished_at"], name="automate_run_finished"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow} v{self.workflow_version} #{self.pk} ({self.status})"

    duration = property(_elapsed)

    @property
    def carrier_id(self) -> int | None:
        """The outbox item whose claims execute this run: the item that resumed it after
        it parked, else the one it was made for."""
        return self.resume_item_id or self.outbox_item_id  # type: ignore[attr-defined]


def carried_by(item_ids: list[int]) -> models.QuerySet[WorkflowRun]:
    """The runs whose claims the outbox items ``item_ids`` execute (see ``carrier_id``)."""
    return WorkflowRun.objects.filter(
        models.Q(outbox_item_id__in=item_ids, resume_item__isnull=True)
        | models.Q(resume_item_id__in=item_ids)
    )


class StepStatus(models.TextChoices):
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    STOPPED = "stopped", _("Stopped the run")
    FAILED = "failed", _("Failed")
    INTERRUPTED = "interrupted", _("Interrupted (worker lost)")
    WAITING = "waiting", _("Waiting (parked)")


class StepRun(models.Model):
    """One attempt at one step of a run: rendered input, output, error and timings.

    It is also the side-effect record: the row is committed as ``running`` before the step
    executes and as ``succeeded`` right after, so a retried run reuses a succeeded step's
    output instead of repeating it, and a non-idempotent step found still ``running`` (its
    worker died mid-call) is never executed blindly again.
    """

    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="step_runs")
    step = models.ForeignKey(WorkflowStep, on_delete=models.CASCADE, related_name="step_runs")
    attempt = models.PositiveIntegerField(_("attempt"), default=1)
    replay = models.PositiveIntegerField(_("replay"), default=0)
    # The iteration of each enclosing for_each, outermost first ("2", "2.0"); "" outside.
    path = models.CharField(_("iteration"), max_length=200, blank=True, default="")
    status = models.CharField(
        _("status"), max_length=12, choices=StepStatus.choices, default=StepStatus.RUNNING
    )
    input = models.JSONField(_("rendered input"), null=True, blank=True)
    output = models.JSONField(_("output"), null=True, blank=True)
    error = models.JSONField(_("error"), null=True, blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("step run")
        verbose_name_plural = _("step runs")
        ordering = ["run", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "step", "path", "attempt"], name="automate_step_attempt_path"
            ),
        ]
        # The admin overview's failures and slowest steps read recent attempts by this.
        indexes = [models.Index(fields=["finished_at"], name="automate_step_finished")]

    def __str__(self) -> str:
        return f"{self.step.name} attempt {self.attempt} ({self.status})"

    duration = property(_elapsed)


# MCP servers live in their own module; the spec imports them from here.
# The table of parked runs lives with the control flow.
from automate.flow.models import RunWait  # noqa: E402,F401
from automate.mcp.models import MCPServer, MCPTool  # noqa: E402,F401


class WorkerHeartbeat(models.Model):
    """When a worker process last polled the outbox (``automate.health``); one row per
    process, written at most every ``AUTOMATE["WORKER_HEARTBEAT_SECONDS"]``."""

    worker = models.CharField(_("worker"), max_length=200, unique=True)
    seen_at = models.DateTimeField(_("seen at"), db_index=True)

    class Meta:
        verbose_name = _("worker heartbeat")
        verbose_name_plural = _("worker heartbeats")

    def __str__(self) -> str:
        return f"{self.worker} at {self.seen_at:%Y-%m-%d %H:%M:%S}"


class Overview(WorkflowRun):
    """The admin's "Automate overview" page (``automate.dashboard``): no table of its own."""

    class Meta:
        proxy = True
        verbose_name = _("Automate overview")
        verbose_name_plural = _("Automate overview")


class WebhookRefusalMinute(models.Model):
    """Webhook requests refused with 401, per minute and connector: the admin overview's
    "most 401s" (a refusal stores no outbox row). One UPDATE per refusal."""

    minute = models.DateTimeField(_("minute"))
    connector_key = models.CharField(_("connector"), max_length=100)
    status = models.PositiveSmallIntegerField(_("status"))
    count = models.PositiveIntegerField(_("count"), default=0)

    class Meta:
        verbose_name = _("refused webhooks per minute")
        verbose_name_plural = _("refused webhooks per minute")
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "connector_key", "status"], name="automate_refusal_minute"
            )
        ]

    def __str__(self) -> str:
        return f"{self.connector_key} {self.status} x{self.count} at {self.minute:%H:%M}"


# Outgoing webhooks live in their own package.
from automate.outgoing.models import (  # noqa: E402,F401
    DeliveryAttempt,
    EndpointSecret,
    OutgoingMessage,
    WebhookEndpoint,
)

# Receipts of id-less signed webhooks (replay protection) live with their logic.
from automate.replays import WebhookReceipt  # noqa: E402,F401

# Schedules (their ticks, exactly once across processes) live in their own package.
from automate.schedules.models import Schedule, ScheduleTick  # noqa: E402,F401
