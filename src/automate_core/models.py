"""Models of the kernel: the outbox and encrypted secrets."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from automate_core.crypto.fernet import decrypt, encrypt
from automate_core.outbox.models import OutboxItem, OutboxStatus

__all__ = ["OutboxItem", "OutboxStatus", "Secret"]


class Secret(models.Model):
    """A secret stored encrypted with the Fernet keys of ``AUTOMATE["ENCRYPTION_KEYS"]``.

    Reference it as ``secret://NAME``. The value is never shown back, only replaced.
    """

    name = models.CharField(_("name"), max_length=200, unique=True)
    description = models.CharField(_("description"), max_length=300, blank=True, default="")
    ciphertext = models.TextField(editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("secret")
        verbose_name_plural = _("secrets")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_value(self, value: str) -> None:
        self.ciphertext = encrypt(value)

    def get_value(self) -> str:
        return decrypt(self.ciphertext)
