"""``manage.py automate_rotate_secrets``: re-encrypt stored secrets under the newest key.

Key rotation in three steps: put a new key FIRST in ``AUTOMATE["ENCRYPTION_KEYS"]`` (keep
the old ones after it, so everything still decrypts), run this command, then remove the
old keys. It re-encrypts every :class:`automate_core.models.Secret` row and every
sealed (``fernet:``) webhook secret of ``automate.ConnectionProfile`` and API key of
``automate.MCPServer`` (when that app is installed).
A value no configured key can decrypt is left exactly as it was and reported; the command
then exits with an error so a deployment script notices.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import InvalidToken
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from automate_core import crypto
from automate_core.models import Secret


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
        with transaction.atomic():
            secrets = self._rotate_secret_rows(failed, dry_run)
            profiles = self._rotate_profiles(failed, dry_run)
            profiles += self._rotate_mcp_servers(failed, dry_run)
            if dry_run:
                transaction.set_rollback(True)
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        self.stdout.write(
            f"{verb} {secrets} secret(s) and {profiles} webhook secret(s) and API key(s)"
        )
        if failed:
            raise CommandError(
                f"{len(failed)} value(s) cannot be decrypted with any configured key and were "
                f"left unchanged: {', '.join(failed)}. Add the key that encrypted them to "
                'AUTOMATE["ENCRYPTION_KEYS"] and run the command again.'
            )

    def _rotate_secret_rows(self, failed: list[str], dry_run: bool) -> int:
        count = 0
        for row in Secret.objects.select_for_update().order_by("pk"):
            try:
                token = crypto.rotate(row.ciphertext)
            except InvalidToken:
                failed.append(f"secret {row.name!r}")
                continue
            if not dry_run:
                Secret.objects.filter(pk=row.pk).update(ciphertext=token)
            count += 1
        return count

    def _rotate_profiles(self, failed: list[str], dry_run: bool) -> int:
        if not apps.is_installed("automate"):
            return 0
        profile_model = apps.get_model("automate", "ConnectionProfile")
        count = 0
        for profile in profile_model.objects.select_for_update().order_by("pk"):
            rotated = []
            for index, value in enumerate(profile.webhook_secrets):
                if crypto.is_sealed(value):
                    try:
                        value = crypto.reseal(value)
                        count += 1
                    except InvalidToken:
                        failed.append(f"connection profile {profile.key!r} secret #{index + 1}")
                rotated.append(value)
            if rotated != profile.webhook_secrets and not dry_run:
                # .update(): re-validating the profile's config is not this command's job.
                profile_model.objects.filter(pk=profile.pk).update(webhook_secrets=rotated)
        return count

    def _rotate_mcp_servers(self, failed: list[str], dry_run: bool) -> int:
        if not apps.is_installed("automate"):
            return 0
        server_model = apps.get_model("automate", "MCPServer")
        count = 0
        for server in server_model.objects.select_for_update().order_by("pk"):
            if not crypto.is_sealed(server.api_key):
                continue
            try:
                api_key = crypto.reseal(server.api_key)
            except InvalidToken:
                failed.append(f"MCP server {server.key!r} API key")
                continue
            if not dry_run:
                server_model.objects.filter(pk=server.pk).update(api_key=api_key)
            count += 1
        return count
