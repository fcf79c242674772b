"""Outgoing webhooks: deliveries per second to a loopback endpoint, beside the pipeline.

    python -m benchmarks.outgoing [--messages 2000] [--threads 2] [--database NAME]

In the same run, on the same PostgreSQL and with the same embedded worker
(``EmbeddedWorker(threads=--threads).run(once=True)``, what ``manage.py automate_worker``
runs), two backlogs are drained:

* **deliveries**: ``--messages`` messages sent with ``send_webhook`` to one endpoint on
  127.0.0.1 (a receiver in its own process answering 204), each signed, sent through the
  SSRF-safe client, recorded as a ``DeliveryAttempt`` and settled;
* **plain pipeline**: as many events through a one-step workflow of a no-op step (the
  bench app's ``bench_noop``), no HTTP at all.

Both backlogs are stored before the clock starts; the clock runs from the worker's start
to the last item settled. The receiver is a Python ``ThreadingHTTPServer`` on the same
CPUs: it takes CPU from the sender, so the delivery figure is a floor.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks import common

DB = "automate_bench_outgoing"

RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
server.daemon_threads = True
server.serve_forever()
"""


def drain(threads: int) -> float:
    """Seconds the embedded worker takes to settle every due item."""
    from django.db import connections

    from automate.worker import EmbeddedWorker

    connections.close_all()
    started = time.perf_counter()
    EmbeddedWorker(threads=threads, batch=20, poll_seconds=0.05).run(once=True)
    return time.perf_counter() - started


def deliveries(messages: int, threads: int, port: int) -> float:
    from django.db import transaction
    from django.test.utils import override_settings

    from automate import send_webhook
    from automate.conf import settings as app_settings
    from automate.outgoing import OUTGOING_KEY, DeliveryAttempt, WebhookEndpoint
    from automate.outgoing.signing import generate_secret
    from automate_core.models import OutboxItem

    admitted = {
        **common_settings(),
        "HTTP_ALLOW_NETWORKS": ["127.0.0.1/32"],
        "HTTP_ALLOWED_PORTS": [port],
        # A reference: the example project has no encryption key to seal a stored secret.
        "SECRETS": {"bench-endpoint": generate_secret()},
    }
    with override_settings(AUTOMATE=admitted):
        WebhookEndpoint.create(f"http://127.0.0.1:{port}/hook", secret="secret://bench-endpoint")
        with transaction.atomic():
            for n in range(messages):
                send_webhook("order.created", {"order": n, "lines": [{"sku": "A-1", "qty": 2}]})
        elapsed = drain(threads)
        print(f"deliveries: {app_settings.OUTGOING_WEBHOOK_THREADS} per batch", flush=True)
    items = OutboxItem.objects.filter(connector_key=OUTGOING_KEY)
    assert not items.exclude(status="done").exists(), "a delivery did not succeed"
    assert DeliveryAttempt.objects.filter(status_code=204).count() == messages
    return messages / elapsed


def pipeline(events: int, threads: int) -> float:
    from automate.models import RunStatus, WorkflowRun
    from automate.services import WorkflowService
    from automate_core.models import OutboxItem

    WorkflowService().create_workflow(
        name="Bench noop",
        trigger={"connector": "github", "events": ["push"]},
        steps=[{"name": "Noop", "type": "bench_noop", "config": {}}],
    )
    common.enqueue_noop_events("plain", "push", range(events))
    elapsed = drain(threads)
    assert not OutboxItem.objects.filter(connector_key="github").exclude(status="done").exists()
    assert WorkflowRun.objects.filter(status=RunStatus.COMPLETED).count() == events
    return events / elapsed


def common_settings() -> dict:
    from django.conf import settings

    return dict(settings.AUTOMATE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--database", default=DB, help="scratch database (dropped at the end)")
    args = parser.parse_args()
    url = common.scratch_database(args.database)
    port = common.free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        common.migrate_and_setup(url)
        common.wait_for(lambda: _listening(port), 10, "the receiver")
        sent = deliveries(args.messages, args.threads, port)
        plain = pipeline(args.messages, args.threads)
    finally:
        receiver.terminate()
        receiver.wait(10)
        from django.db import connections

        connections.close_all()
        common.drop_database(args.database)
    body = common.table(
        ["what", "items", "worker threads", "items/s"],
        [
            ["deliveries to a loopback endpoint", args.messages, args.threads, f"{sent:,.0f}"],
            ["plain pipeline (one no-op step)", args.messages, args.threads, f"{plain:,.0f}"],
        ],
    )
    notes = (
        "Embedded worker in the benchmark's process, batches of 20; each delivery is signed, "
        "sent through the SSRF-safe client (DNS check, guarded connect, size cap) and "
        "recorded. The receiver is a Python server on the same CPUs."
    )
    common.report("Outgoing webhooks: deliveries per second", body, notes)


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), 0.2):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
