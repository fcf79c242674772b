"""Views of the REST API."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import transaction
from django.db.models import Model, QuerySet
from django.utils.module_loading import import_string
from drf_spectacular.utils import OpenApiParameter, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from automate import dispatch, signals
from automate.api import serializers as s
from automate.api.inspectors import SpectacularSchema, extend_schema
from automate.conf import settings as app_settings
from automate.models import (
    API_SOURCE_PREFIX,
    FINISHED_RUN_STATUSES,
    RunStatus,
    Workflow,
    WorkflowRun,
)
from automate.services import WorkflowService
from automate_connectors.storable import is_storable
from automate_core.outbox import queue
from automate_core.tracing import trace


class CanStartRuns(permissions.BasePermission):
    """Posting events, starting and replaying runs: ``automate.add_workflowrun``."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("automate.add_workflowrun"))


class ModelPermissions(permissions.DjangoModelPermissions):
    """DRF's model permissions, reading included: ``GET`` needs ``view_<model>`` (or
    ``change_<model>``, which implies it, as in the admin); writes need add, change or
    delete. A run holds its event's payload and every step's input and output, so a
    logged-in user without the permission gets 403, not the data."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method not in permissions.SAFE_METHODS:
            return super().has_permission(request, view)
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return can_view(user, self._queryset(view).model)


class CanViewRuns(permissions.BasePermission):
    """Reading runs, events and step records: ``automate.view_workflowrun``."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and can_view(user, WorkflowRun))


def can_view(user: Any, model: type[Model]) -> bool:
    opts = model._meta
    return any(
        user.has_perm(f"{opts.app_label}.{action}_{opts.model_name}")
        for action in ("view", "change")
    )


def visible(request: Request, queryset: QuerySet[Any]) -> QuerySet[Any]:
    """The rows of ``queryset`` this request may see: all of them, unless
    ``AUTOMATE["API_OBJECT_FILTER"]`` names a ``(request, queryset) -> queryset`` callable
    (a multi-tenant project's rule). It is called for workflows and for runs (look at
    ``queryset.model``), before any lookup, so a row it leaves out is a 404 everywhere:
    list, detail, update, delete, run and replay."""
    rule = app_settings.API_OBJECT_FILTER
    if rule is None:
        return queryset
    restrict = import_string(rule) if isinstance(rule, str) else rule
    return restrict(request, queryset)


class CanCancelRuns(permissions.BasePermission):
    """Cancelling runs: ``automate.change_workflowrun``."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("automate.change_workflowrun"))


class Pagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


UNSTORABLE = "must not contain NUL characters, lone surrogates or non-finite numbers"
#: How deeply a request body's JSON may nest. Far more than any workflow or event needs,
#: far less than the parser's recursion limit (a body nested past it was a 500).
MAX_JSON_DEPTH = 100
TOO_DEEP = f"JSON nested more than {MAX_JSON_DEPTH} levels deep"


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when lists and objects in ``value`` nest more than ``limit`` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class APIMixin:
    pagination_class = Pagination
    # Set here, not through DEFAULT_SCHEMA_CLASS: the schema works with stock DRF settings.
    schema = SpectacularSchema()

    def get_renderers(self) -> list[BaseRenderer]:
        """The project's renderers, less the browsable API when its templates are missing
        (``rest_framework`` not in INSTALLED_APPS): browsers then get JSON, not a 500."""
        renderers: list[BaseRenderer] = super().get_renderers()  # type: ignore[misc]
        if apps.is_installed("rest_framework"):
            return renderers
        usable = [r for r in renderers if not isinstance(r, BrowsableAPIRenderer)]
        return usable or [JSONRenderer()]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """After authentication: refuse, with a 400, input that no database column can hold
        (NUL characters, lone surrogates, NaN), which would otherwise fail as a 500."""
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if not is_storable(dict(request.query_params.lists())):
            raise ValidationError({"query": UNSTORABLE})
        if request.method not in ("POST", "PUT", "PATCH"):
            return
        try:
            data = request.data
        except RecursionError:  # the parser gave up on a body nested thousands deep
            raise ParseError(TOO_DEEP) from None
        if json_depth_exceeds(data):
            raise ParseError(TOO_DEEP)
        if not is_storable(data):
            raise ValidationError({"body": UNSTORABLE})


@extend_schema(
    request=s.EventSerializer,
    responses={202: s.AcceptedSerializer, 200: s.AcceptedSerializer},
    summary="Queue an event for the workflows of a connection, as a webhook would be",
)
class EventView(APIMixin, APIView):
    """Events posted here start the same workflows as the connection's webhooks, but they
    are stored under their own source, ``api:<connection>``: their ids are deduplicated
    among API events only, so an API user can never make a genuine signed delivery a
    "duplicate" by posting its id first."""

    permission_classes = [CanStartRuns]

    def post(self, request: Request) -> Response:
        serializer = s.EventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with trace() as trace_id, transaction.atomic():
            result = queue.enqueue(
                API_SOURCE_PREFIX + data["connector"],
                event_type=data["type"],
                payload=data["payload"],
                external_id=data["id"],
                trace_id=trace_id,
            )
            if result.created:
                key, item = data["connector"], result.item
                transaction.on_commit(lambda: signals.event_accepted.send(sender=key, item=item))
        item = result.item
        if not result.created:
            return Response({"id": item.pk, "trace_id": item.trace_id, "duplicate": True})
        return Response({"id": item.pk, "trace_id": item.trace_id}, status=202)


@extend_schema_view(
    list=extend_schema(summary="List workflows"),
    create=extend_schema(summary="Create a workflow (validated before anything is saved)"),
    update=extend_schema(summary="Replace a workflow; new steps make a new version"),
    partial_update=extend_schema(summary="Change a workflow; new steps make a new version"),
)
class WorkflowViewSet(APIMixin, viewsets.ModelViewSet):
    serializer_class = s.WorkflowSerializer
    lookup_field = "key"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    permission_classes = [ModelPermissions]

    def get_queryset(self) -> QuerySet[Workflow]:
        return visible(self.request, Workflow.objects.order_by("id"))

    @extend_schema(
        request=s.ManualRunSerializer,
        responses={202: s.RunSerializer},
        summary="Start a run of this workflow",
    )
    @action(detail=True, methods=["post"], permission_classes=[CanStartRuns])
    def run(self, request: Request, key: str | None = None) -> Response:
        workflow = self.get_object()
        serializer = s.ManualRunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = WorkflowService().run_workflow(workflow, dict(serializer.validated_data))
        return Response(s.RunSerializer(run).data, status=202)


@extend_schema_view(
    list=extend_schema(
        summary="List runs",
        parameters=[
            OpenApiParameter("status", str, enum=[c.value for c in RunStatus]),
            OpenApiParameter("trace_id", str),
            OpenApiParameter("workflow", str, description="A workflow key."),
        ],
    ),
    retrieve=extend_schema(summary="A run with its steps", responses=s.RunDetailSerializer),
)
class RunViewSet(
    APIMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    permission_classes = [CanViewRuns]

    def get_serializer_class(self) -> type:
        return s.RunDetailSerializer if self.action == "retrieve" else s.RunSerializer

    def get_queryset(self) -> QuerySet[WorkflowRun]:
        runs = visible(self.request, WorkflowRun.objects.select_related("workflow").order_by("-id"))
        filters = {"status": "status", "trace_id": "trace_id", "workflow": "workflow__key"}
        for param, lookup in filters.items():
            if value := self.request.query_params.get(param):
                runs = runs.filter(**{lookup: value})
        return runs

    @extend_schema(
        request=None,
        responses={202: s.RunSerializer, 409: s.ErrorSerializer},
        summary="Replay a dead run",
    )
    @action(detail=True, methods=["post"], permission_classes=[CanStartRuns, CanViewRuns])
    def replay(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        if run.status != RunStatus.DEAD or run.carrier_id is None:
            return Response(
                {"error": f"only dead runs can be replayed; this one is {run.status}"},
                status=status.HTTP_409_CONFLICT,
            )
        dispatch.replay([run.carrier_id])
        run.refresh_from_db()
        return Response(s.RunSerializer(run).data, status=202)

    @extend_schema(
        request=None,
        responses={202: s.RunSerializer, 409: s.ErrorSerializer},
        summary="Cancel a pending, waiting or running run",
    )
    @action(detail=True, methods=["post"], permission_classes=[CanCancelRuns])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        if run.status in FINISHED_RUN_STATUSES:
            return Response(
                {"error": f"only unfinished runs can be cancelled; this one is {run.status}"},
                status=status.HTTP_409_CONFLICT,
            )
        run = WorkflowService().cancel_run(run)
        return Response(s.RunSerializer(run).data, status=202)
