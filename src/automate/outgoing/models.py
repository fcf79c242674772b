"""Endpoints, their secrets, messages and delivery attempts of outgoing webhooks."""

from __future__ import annotations

import fnmatch
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from automate.conf import settings as app_settings
from automate.outgoing.signing import generate_secret
from automate_core.crypto import seal, unseal
from automate_core.net import SSRFError, check_url
from automate_core.throttling import parse_rate


class WebhookEndpoint(models.Model):
    """A URL one of the project's users registered to receive its webhooks.

    ``owner`` is a string the project chooses (a tenant or account id, ``"app.model:pk"``
    for a model instance, see :func:`automate.outgoing.api.owner_label`); ``event_types``
    holds patterns with ``*`` wildcards (empty: every event). Secrets are
    :class:`EndpointSecret` rows; several are active during a rotation.
    """

    owner = models.CharField(_("owner"), max_length=200, blank=True, default="", db_index=True)
    url = models.URLField(_("URL"), max_length=2000)
    description = models.TextField(_("description"), blank=True, default="")
    event_types = models.JSONField(
        _("event types"),
        default=list,
        blank=True,
        help_text=_('Event types to send ("*" wildcards allowed, e.g. "invoice.*"); empty: all.'),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    rate_limit = models.CharField(
        _("rate limit"),
        max_length=50,
        blank=True,
        default="",
        help_text=_('e.g. "10/s" or "600/min"; empty: AUTOMATE["OUTGOING_WEBHOOK_RATE_LIMIT"].'),
    )
    ordered = models.BooleanField(
        _("in order"),
        default=False,
        help_text=_(
            "Deliver one message at a time, in the order they were sent: a failing message "
            "holds back the later ones until it is delivered or dead."
        ),
    )
    disabled_reason = models.CharField(_("disabled because"), max_length=200, blank=True)
    failing_since = models.DateTimeField(_("failing since"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        app_label = "automate"
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ["owner", "id"]

    def __str__(self) -> str:
        return f"{self.owner}: {self.url}" if self.owner else self.url

    def clean(self) -> None:
        if not isinstance(self.event_types, list) or not all(
            isinstance(p, str) and p for p in self.event_types
        ):
            raise ValidationError({"event_types": _("A list of event types or patterns.")})
        if self.rate_limit:
            try:
                parse_rate(self.rate_limit)
            except ValueError as exc:
                raise ValidationError({"rate_limit": str(exc)}) from None
        if self.url:
            try:
                # Scheme, port, credentials, denied names: no DNS here (an address is
                # checked when each delivery connects).
                check_url(httpx.URL(self.url), purpose="webhooks")
            except httpx.InvalidURL as exc:
                raise ValidationError({"url": str(exc)}) from None
            except SSRFError as exc:
                raise ValidationError({"url": exc.message}) from None

    def matches(self, event_type: str) -> bool:
        patterns = self.event_types or []
        return not patterns or any(fnmatch.fnmatchcase(event_type, p) for p in patterns)

    # -- Secrets -------------------------------------------------------------------------

    def active_secrets(self, now: datetime | None = None) -> list[EndpointSecret]:
        """Secrets that sign deliveries now, newest first."""
        now = now or timezone.now()
        return list(
            self.secrets.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)).order_by(
                "-created_at", "-id"
            )
        )

    def rotate_secret(self, value: str | None = None) -> str:
        """Add a new secret (generated unless ``value`` is given) and return it, once.

        The secrets active until now keep signing for
        ``AUTOMATE["OUTGOING_WEBHOOK_SECRET_OVERLAP_SECONDS"]``, so the receiver has time
        to switch. The value is stored sealed and cannot be read back from the admin.
        """
        value = value or generate_secret()
        now = timezone.now()
        overlap = timedelta(seconds=app_settings.OUTGOING_WEBHOOK_SECRET_OVERLAP_SECONDS)
        with transaction.atomic():
            self.secrets.filter(expires_at__isnull=True).update(expires_at=now + overlap)
            self.secrets.filter(expires_at__gt=now + overlap).update(expires_at=now + overlap)
            EndpointSecret.objects.create(endpoint=self, secret=seal(value))
        return value

    @classmethod
    def create(cls, url: str, **fields: Any) -> tuple[WebhookEndpoint, str]:
        """A new endpoint and its first secret (returned here, and never again); pass
        ``secret="whsec_..."`` to use one of yours instead of a generated one."""
        given = fields.pop("secret", None)
        with transaction.atomic():
            endpoint = cls(url=url, **fields)
            endpoint.full_clean()
            endpoint.save()
            secret = endpoint.rotate_secret(given)
        return endpoint, secret


class EndpointSecret(models.Model):
    """One signing secret of an endpoint, sealed (encrypted, or a ``secret://`` reference)."""

    endpoint = models.ForeignKey(
        WebhookEndpoint,
        on_delete=models.CASCADE,
        related_name="secrets",
        verbose_name=_("endpoint"),
    )
    secret = models.CharField(_("secret"), max_length=1000, editable=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    expires_at = models.DateTimeField(_("stops signing at"), null=True, blank=True)

    class Meta:
        app_label = "automate"
        verbose_name = _("endpoint secret")
        verbose_name_plural = _("endpoint secrets")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"secret #{self.pk} of endpoint {self.endpoint_id}"

    def value(self) -> str:
        return unseal(self.secret)


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex


class OutgoingMessage(models.Model):
    """One event sent to every matching endpoint of its owner (``webhook-id`` is ``uid``)."""

    uid = models.CharField(
        _("webhook id"), max_length=64, unique=True, default=new_message_id, editable=False
    )
    owner = models.CharField(_("owner"), max_length=200, blank=True, default="", db_index=True)
    event_type = models.CharField(_("event type"), max_length=200)
    payload = models.JSONField(_("payload"), null=True, blank=True)
    # NULL, not "": the unique constraint must ignore messages sent without a key.
    key = models.CharField(  # noqa: DJ001
        _("idempotency key"), max_length=255, null=True, blank=True
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)

    class Meta:
        app_label = "automate"
        verbose_name = _("outgoing message")
        verbose_name_plural = _("outgoing messages")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "key"],
                condition=Q(key__isnull=False),
                name="automate_outgoing_unique_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.uid}"

    def envelope(self) -> dict[str, Any]:
        """The JSON body every endpoint receives (the specification's payload structure)."""
        return {
            "type": self.event_type,
            "timestamp": self.created_at.isoformat(),
            "data": self.payload,
        }


class DeliveryAttempt(models.Model):
    """One HTTP request of one message to one endpoint, and what came of it."""

    endpoint = models.ForeignKey(
        WebhookEndpoint,
        on_delete=models.CASCADE,
        related_name="attempts",
        verbose_name=_("endpoint"),
    )
    message = models.ForeignKey(
        OutgoingMessage,
        on_delete=models.CASCADE,
        related_name="attempts",
        verbose_name=_("message"),
    )
    attempt = models.PositiveIntegerField(_("attempt"))
    status_code = models.PositiveIntegerField(_("status code"), null=True, blank=True)
    response_excerpt = models.TextField(_("response (excerpt)"), blank=True, default="")
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)
    error_code = models.CharField(_("error code"), max_length=50, blank=True, default="")
    error_message = models.CharField(_("error"), max_length=500, blank=True, default="")
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    created_at = models.DateTimeField(_("at"), default=timezone.now, db_index=True)

    class Meta:
        app_label = "automate"
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["endpoint", "-id"], name="automate_delivery_endpoint"),
            models.Index(fields=["message", "endpoint"], name="automate_delivery_message"),
        ]

    def __str__(self) -> str:
        outcome = self.status_code or self.error_code or "?"
        return f"{self.message_id} -> {self.endpoint_id} #{self.attempt}: {outcome}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
