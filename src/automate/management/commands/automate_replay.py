"""``manage.py automate_replay``: send dead-lettered events back to the queue."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from automate import dispatch
from automate.models import WorkflowRun
from automate_core.outbox.models import OutboxItem, OutboxStatus


class Command(BaseCommand):
    help = (
        "Replay dead-lettered events: their dead runs start again with a fresh attempt "
        "budget; completed steps are not repeated. A non-idempotent step whose outcome was "
        "unknown IS executed again: check the target first."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="Outbox item ids to replay.")
        parser.add_argument("--run", type=int, action="append", default=[], help="A run id.")
        parser.add_argument("--all", action="store_true", help="Every dead-lettered item.")
        parser.add_argument("--connector", help="With --all: only this connection key.")

    def handle(self, *args: Any, **options: Any) -> None:
        ids = set(options["ids"])
        if options["run"]:
            runs = WorkflowRun.objects.filter(pk__in=options["run"])
            found = dict(runs.values_list("pk", "outbox_item_id"))
            missing = sorted(set(options["run"]) - set(found))
            if missing:
                raise CommandError(f"no workflow run with id {', '.join(map(str, missing))}")
            ids |= {item_id for item_id in found.values() if item_id is not None}
        if options["all"]:
            dead = OutboxItem.objects.filter(status=OutboxStatus.DEAD)
            if options["connector"]:
                dead = dead.filter(connector_key=options["connector"])
            ids |= set(dead.values_list("pk", flat=True))
        if not ids:
            raise CommandError("name outbox item ids, --run RUN_ID or --all")
        replayable = set(
            OutboxItem.objects.filter(
                pk__in=ids, status__in=[OutboxStatus.DEAD, OutboxStatus.FAILED]
            ).values_list("pk", flat=True)
        )
        for item_id in sorted(ids - replayable):
            self.stderr.write(f"item {item_id}: not found or not dead/failed, skipped")
        count = dispatch.replay(sorted(replayable))
        self.stdout.write(f"replayed {count} item(s)")
