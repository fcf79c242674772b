"""Models of the ``automate`` app."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from automate_core.providers.errors import AutomateError
from automate_core.secrets import is_reference, parse_reference

ENCRYPTED_PREFIX = "fernet:"

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
        from automate_connectors.base import validate_config
        from automate_connectors.registry import NotRegistered, get_connector

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
        from automate_core.crypto import encrypt

        stored = value if is_reference(value) else ENCRYPTED_PREFIX + encrypt(value)
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


from automate.mcp.models import MCPServer, MCPTool  # noqa: E402,F401
