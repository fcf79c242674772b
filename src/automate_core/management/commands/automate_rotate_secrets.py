"""``manage.py automate_rotate_secrets``: re-encrypt stored secrets under the newest key.

Key rotation in three steps: put a new key FIRST in ``AUTOMATE["ENCRYPTION_KEYS"]`` (keep
the old ones after it, so everything still decrypts), run this command, then remove the
old keys. It re-encrypts every field the installed apps registered in
:mod:`automate_core.crypto.sealed_fields`: the :class:`automate_core.models.Secret` rows,
and (from the ``automate`` app) the sealed (``fernet:``) webhook secrets of connection
profiles and API keys of MCP servers; references (``secret://NAME``) are left as written.
A value no configured key can decrypt is left exactly as it was and reported; the command
then exits with an error so a deployment script notices.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import InvalidToken
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from automate_core import crypto
from automate_core.crypto.sealed_fields import SealedField, Shape, sealed_fields


class Command(BaseCommand):
    help = "Re-encrypt stored secrets with the newest key of AUTOMATE['ENCRYPTION_KEYS']."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Check that every value decrypts and report counts; change nothing.",
        )

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        try:
            crypto.encrypt("")  # fails early, with the setting's instructions, without keys
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        failed: list[str] = []
        tokens = sealed = 0
        with transaction.atomic():
            for entry in sealed_fields():
                count = self._rotate_field(entry, failed, dry_run)
                if entry.shape == Shape.TOKEN:
                    tokens += count
                else:
                    sealed += count
            if dry_run:
                transaction.set_rollback(True)
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        self.stdout.write(
            f"{verb} {tokens} secret(s) and {sealed} webhook secret(s) and API key(s)"
        )
        if failed:
            raise CommandError(
                f"{len(failed)} value(s) cannot be decrypted with any configured key and were "
                f"left unchanged: {', '.join(failed)}. Add the key that encrypted them to "
                'AUTOMATE["ENCRYPTION_KEYS"] and run the command again.'
            )

    def _rotate_field(self, entry: SealedField, failed: list[str], dry_run: bool) -> int:
        """Re-encrypt one registered field on every row; the number of values rotated."""
        manager = entry.model_class()._default_manager
        count = 0
        for row in manager.select_for_update().order_by("pk"):
            value = getattr(row, entry.field)
            if entry.shape == Shape.SEALED_LIST:
                rotated, done = _rotate_list(value, entry.describe(row), failed)
            else:
                rotated, done = _rotate_one(value, entry, row, failed)
            count += done
            if rotated != value and not dry_run:
                # .update(): re-validating the row (a profile's config...) is not our job.
                manager.filter(pk=row.pk).update(**{entry.field: rotated})
        return count


def _rotate_one(value: Any, entry: SealedField, row: Any, failed: list[str]) -> tuple[Any, int]:
    if entry.shape == Shape.SEALED and not crypto.is_sealed(value):
        return value, 0  # a secret:// reference (or nothing): no ciphertext to rotate
    try:
        if entry.shape == Shape.TOKEN:
            return crypto.rotate(value), 1
        return crypto.reseal(value), 1
    except InvalidToken:
        failed.append(entry.describe(row))
        return value, 0


def _rotate_list(values: list[Any], label: str, failed: list[str]) -> tuple[list[Any], int]:
    rotated, count = [], 0
    for index, value in enumerate(values):
        if crypto.is_sealed(value):
            try:
                value = crypto.reseal(value)
                count += 1
            except InvalidToken:
                failed.append(f"{label} #{index + 1}")
        rotated.append(value)
    return rotated, count
