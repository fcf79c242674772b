"""``LLMProfile`` (which provider, configured how) and ``LLMUsage`` (one row per call)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from automate_core.providers.errors import AutomateError
from automate_core.secrets import is_reference, parse_reference
from automate_llm.provider_config import validate_provider_config
from automate_llm.ratelimit import validate_rate
from automate_llm.registry import NotRegistered, get_provider

key_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9_\-]{0,99}$",
    _("Use lower-case letters, digits, '_' and '-' (workflow steps name the profile by it)."),
)


class LLMProfile(models.Model):
    """A named, reusable LLM setup: a provider key, its configuration and a rate limit.

    The configuration is validated against the provider's ``config_schema()`` however the
    row is written. Fields the provider lists in ``secret_fields`` (API keys) must be
    ``secret://NAME`` references: the value lives in a secret backend (the environment,
    settings, or the encrypted ``automate_core.Secret`` table), never in this row.
    """

    key = models.CharField(_("key"), max_length=100, unique=True, validators=[key_validator])
    provider_key = models.CharField(_("provider"), max_length=100)
    name = models.CharField(_("name"), max_length=200, blank=True, default="")
    enabled = models.BooleanField(_("enabled"), default=True)
    config = models.JSONField(_("configuration"), default=dict, blank=True)
    rate_limit = models.CharField(
        _("rate limit"),
        max_length=50,
        blank=True,
        default="",
        help_text=_('Calls allowed through this profile, e.g. "60/min"; empty for no limit.'),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("LLM profile")
        verbose_name_plural = _("LLM profiles")
        ordering = ["key"]

    def __str__(self) -> str:
        return self.name or self.key

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.full_clean(validate_unique=False)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.rate_limit:
            try:
                validate_rate(self.rate_limit)
            except ValueError as exc:
                raise ValidationError({"rate_limit": str(exc)}) from None
        try:
            cls = get_provider(self.provider_key)
        except NotRegistered as exc:
            raise ValidationError({"provider_key": str(exc)}) from None
        if not isinstance(self.config, dict):
            raise ValidationError({"config": _("The configuration must be a JSON object.")})
        for field in cls.secret_fields:
            value = self.config.get(field)
            if value is None:
                continue
            if not is_reference(value):
                raise ValidationError(
                    {
                        "config": _(
                            "%(field)s must be a secret:// reference (add the value as a "
                            "Secret, or in the environment, and reference it by name)."
                        )
                        % {"field": field}
                    }
                )
            try:
                parse_reference(value)
            except ValueError as exc:
                raise ValidationError({"config": f"{field}: {exc}"}) from None
        try:
            validate_provider_config(cls, self.config)
        except AutomateError as exc:
            raise ValidationError({"config": exc.message}) from None


class LLMUsage(models.Model):
    """Tokens, latency and outcome of one LLM call, for cost accounting and debugging.

    ``profile_key`` and ``provider_key`` are copied so rows survive a deleted profile;
    ``run_id``/``step_name`` tie a call made by a workflow step to its run.
    """

    class Status(models.TextChoices):
        OK = "ok", _("ok")
        ERROR = "error", _("error")

    profile = models.ForeignKey(
        LLMProfile,
        verbose_name=_("profile"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="usage",
    )
    profile_key = models.CharField(_("profile key"), max_length=100, db_index=True)
    provider_key = models.CharField(_("provider"), max_length=100)
    model = models.CharField(_("model"), max_length=200, blank=True, default="")
    input_tokens = models.PositiveIntegerField(_("input tokens"), default=0)
    output_tokens = models.PositiveIntegerField(_("output tokens"), default=0)
    estimated = models.BooleanField(
        _("estimated"), default=False, help_text=_("Tokens estimated, not reported.")
    )
    latency_ms = models.PositiveIntegerField(_("latency (ms)"), default=0)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices)
    error_code = models.CharField(_("error code"), max_length=50, blank=True, default="")
    trace_id = models.CharField(_("trace id"), max_length=64, blank=True, default="")
    run_id = models.BigIntegerField(_("workflow run"), null=True, blank=True)
    step_name = models.CharField(_("step"), max_length=200, blank=True, default="")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("LLM usage")
        verbose_name_plural = _("LLM usage")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["profile_key", "created_at"], name="automate_llm_usage_day")
        ]

    def __str__(self) -> str:
        return f"{self.profile_key} {self.input_tokens}+{self.output_tokens} tokens"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
