"""``manage.py automate_prune``: delete settled rows past ``AUTOMATE["RETENTION"]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from automate import retention


class Command(BaseCommand):
    help = (
        'Delete settled rows older than AUTOMATE["RETENTION"] allows: done and dead outbox '
        "items, finished runs, expired webhook receipts, sent webhooks, schedule ticks, "
        "heartbeats. Rows still needed by an unfinished run are kept. Quiet unless -v 2 "
        "or --dry-run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print how many rows of each kind would go; delete nothing.",
        )
        parser.add_argument(
            "--older-than",
            metavar="AGE",
            help='Use this age for every kind instead of RETENTION ("7d", "12h", "30m", '
            "or seconds); receipts keep WEBHOOK_REPLAY_WINDOW_SECONDS.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=retention.DEFAULT_BATCH_SIZE,
            metavar="N",
            help=f"Rows deleted per transaction (default {retention.DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--only",
            action="append",
            choices=retention.KINDS,
            metavar="KIND",
            help=f"Only this kind (repeatable): {', '.join(retention.KINDS)}.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        older_than = None
        if options["older_than"] is not None:
            try:
                older_than = retention.parse_age(options["older_than"])
            except ValueError as exc:
                raise CommandError(f"--older-than: {exc}") from None
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            counts = retention.prune(
                only=options["only"],
                older_than=older_than,
                batch_size=options["batch_size"],
                dry_run=options["dry_run"],
            )
        except ValueError as exc:  # a bad AUTOMATE["RETENTION"] (automate.E130)
            raise CommandError(str(exc)) from None
        if options["dry_run"] or options["verbosity"] >= 2:
            verb = "would delete" if options["dry_run"] else "deleted"
            for kind, count in counts.items():
                self.stdout.write(f"{kind}: {verb} {count}")
