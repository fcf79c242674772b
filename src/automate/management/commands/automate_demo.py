"""``manage.py automate_demo``: send this project one signed webhook and show what happened.

Starts the project's own WSGI application on 127.0.0.1 (a free port), signs a GitHub-style
webhook with the secret configured for the ``github`` connector, posts it, and prints the
answer and the stored outbox row. Nothing leaves this machine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandError
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.core.wsgi import get_wsgi_application

from automate.connections import build_connector, find_connection
from automate_core.models import OutboxItem


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class Command(BaseCommand):
    help = "Post one signed webhook to this project on 127.0.0.1 and print the stored event."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--connector", default="github", help="connection key to post to")

    def handle(self, *args: Any, **options: Any) -> None:
        key = options["connector"]
        connection = find_connection(key)
        if connection is None:
            raise CommandError(f'no connection {key!r}: add it to AUTOMATE["CONNECTORS"]')
        secret = build_connector(connection).secret

        server = ThreadedWSGIServer(("127.0.0.1", 0), _QuietHandler)
        server.set_app(get_wsgi_application())
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        host, port = "127.0.0.1", server.server_address[1]
        try:
            self._post(f"http://{host}:{port}/webhooks/{key}/", secret)
        finally:
            server.shutdown()
            server.server_close()

    def _post(self, url: str, secret: str) -> None:
        delivery = str(uuid.uuid4())
        body = json.dumps(
            {
                "action": "opened",
                "issue": {"number": 1, "title": "Demo issue from automate_demo"},
                "repository": {"full_name": "example/demo"},
            }
        ).encode()
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": signature,
            "User-Agent": "GitHub-Hookshot/automate-demo",
        }
        self.stdout.write(self.style.MIGRATE_HEADING(f"POST {url}"))
        self.stdout.write(f"  X-GitHub-Event: issues   X-GitHub-Delivery: {delivery}")
        response = httpx.post(url, content=body, headers=headers, timeout=10)
        self.stdout.write(self.style.MIGRATE_HEADING(f"Answer: {response.status_code}"))
        self.stdout.write(f"  {response.text}")
        if response.status_code != 202:
            raise CommandError(f"the webhook was not accepted ({response.status_code})")

        item = OutboxItem.objects.get(pk=response.json()["id"])
        self.stdout.write(self.style.MIGRATE_HEADING("Stored outbox row:"))
        for field in (
            "id",
            "connector_key",
            "event_type",
            "external_id",
            "status",
            "trace_id",
            "headers",
        ):
            self.stdout.write(f"  {field:14} {getattr(item, field)}")
        self.stdout.write(f"  {'payload':14} {json.dumps(item.payload)}")

        tampered = httpx.post(url, content=body + b" ", headers=headers, timeout=10)
        self.stdout.write(
            self.style.MIGRATE_HEADING(f"Same request with a tampered body: {tampered.status_code}")
        )
        self.stdout.write(f"  {tampered.text}")
        self.stdout.write(self.style.SUCCESS("Done: a signed webhook was verified and stored."))
