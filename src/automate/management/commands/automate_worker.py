"""``manage.py automate_worker``: the embedded worker, or the Celery-mode dispatcher."""

from __future__ import annotations

import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from automate import dispatch, metrics
from automate.conf import settings as app_settings
from automate.worker import EmbeddedWorker


class Command(BaseCommand):
    help = (
        "Process workflow events. Embedded mode (no broker): claim and execute here, in "
        "threads. --dispatch-only (Celery mode): claim batches and send them to Celery. "
        "SIGTERM/SIGINT finish the current step and release the rest."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="Drain due events, then exit.")
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help="Worker threads (default: 1 on SQLite, 4 otherwise).",
        )
        parser.add_argument("--batch", type=int, default=None, help="Items claimed at once.")
        parser.add_argument(
            "--poll", type=float, default=None, help="Seconds between polls of an empty queue."
        )
        parser.add_argument(
            "--dispatch-only",
            action="store_true",
            help="Claim and hand batches to Celery instead of executing them here.",
        )

        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            help=(
                "Serve Prometheus metrics on this port (needs the prometheus extra); "
                'a scrape must carry AUTOMATE["METRICS_TOKEN"] when it is set.'
            ),
        )
        parser.add_argument(
            "--metrics-addr",
            default="127.0.0.1",
            help="Address of the metrics server (default 127.0.0.1; 0.0.0.0 for all).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["metrics_port"] is not None:
            self._serve_metrics(options["metrics_port"], options["metrics_addr"])
        if options["dispatch_only"]:
            self._dispatch(options)
            return
        threads = options["threads"] or (1 if connection.vendor == "sqlite" else 4)
        worker = EmbeddedWorker(
            threads=threads, batch=options["batch"], poll_seconds=options["poll"]
        )

        def on_signal(signum: int, frame: Any) -> None:
            self.stderr.write("stopping: finishing the current step")
            worker.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        mode = "draining" if options["once"] else "running"
        self.stdout.write(f"automate worker {mode} ({threads} thread(s), {connection.vendor})")
        counts = worker.run(once=options["once"])
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing to do"
        self.stdout.write(f"automate worker stopped ({summary})")

    def _serve_metrics(self, port: int, addr: str) -> None:
        if metrics.serve(port, addr) is None:
            raise CommandError(
                "--metrics-port needs prometheus-client (pip install django-automate[prometheus])"
            )
        self.stdout.write(f"metrics on http://{addr}:{port}/metrics")

    def _dispatch(self, options: dict[str, Any]) -> None:
        stopping: list[bool] = []
        signal.signal(signal.SIGTERM, lambda *a: stopping.append(True))
        signal.signal(signal.SIGINT, lambda *a: stopping.append(True))
        poll = options["poll"] or app_settings.WORKER_POLL_SECONDS
        self.stdout.write("automate dispatcher sending batches to Celery")
        while not stopping:
            sent = dispatch.dispatch_to_celery(options["batch"])
            if not sent:
                if options["once"]:
                    return
                time.sleep(poll)
