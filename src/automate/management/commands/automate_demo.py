"""``manage.py automate_demo``: the whole loop on this machine, embedded mode.

1. serves this project's WSGI application on 127.0.0.1 (a free port);
2. starts a stand-in for Jira's REST API on 127.0.0.1 (the "local target");
3. saves a workflow: on a GitHub ``issues`` event, create a Jira issue with the built-in
   ``jira`` connector, keep going only for newly opened issues (a ``filter``), then, for
   an issue labelled ``bug`` (a ``branch``), wait a moment (a ``delay`` of
   :data:`DELAY_SECONDS`);
4. posts a GitHub-signed webhook, and the same one tampered with (401, nothing stored);
5. runs the embedded worker until the queue is empty: the run parks on its delay
   (``waiting``, no worker holds it); when the delay's timer is due, the worker resumes it;
6. prints the run, its steps, the side the branch took, how long the delay waited and
   what the target received, with the admin URL to look at it.

Nothing leaves this machine. Run it again as often as you like: the profile and the
workflow are updated in place, and each run posts a new delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.core.wsgi import get_wsgi_application
from django.test import override_settings

from automate.connections import build_connector, find_connection
from automate.models import ConnectionProfile, RunStatus, Workflow, WorkflowRun
from automate.services import WorkflowService
from automate.worker import EmbeddedWorker
from automate_core.models import OutboxItem

WORKFLOW_KEY = "demo-github-to-jira"
JIRA_KEY = "demo_jira"
#: How long the demo's ``delay`` parks the run: short, so the demo stays quick.
DELAY_SECONDS = 1
BRANCH = "Labelled bug?"
DELAY = "Wait a moment"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class FakeJira:
    """Answers ``POST /rest/api/3/issue`` like Jira Cloud and remembers what it got."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.received.append({"path": self.path, "body": body})
                number = len(fake.received)
                reply = json.dumps({"id": str(10000 + number), "key": f"DEMO-{number}"}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"


@contextmanager
def serving(server: Any) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


class Command(BaseCommand):
    help = (
        "Run the demo: a signed webhook through a workflow with a branch and a delay, "
        "all on 127.0.0.1."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        connection = find_connection("github")
        if connection is None:
            raise CommandError('the demo needs a "github" connection in AUTOMATE["CONNECTORS"]')
        secret = build_connector(connection).secret

        app_server = ThreadedWSGIServer(("127.0.0.1", 0), _QuietHandler)
        app_server.set_app(get_wsgi_application())
        jira = FakeJira()
        # The target runs on this machine, which the SSRF rules refuse by default; a real
        # project lists its internal hosts the same way (HTTP_ALLOW_NETWORKS / _PORTS).
        automate = dict(getattr(settings, "AUTOMATE", {}))
        automate["HTTP_ALLOW_NETWORKS"] = ["127.0.0.1/32"]
        automate["HTTP_ALLOWED_PORTS"] = [80, 443, jira.port]
        with override_settings(AUTOMATE=automate), serving(app_server), serving(jira.httpd):
            workflow = self._setup(jira.url)
            url = f"http://127.0.0.1:{app_server.server_address[1]}/webhooks/github/"
            item = self._post(url, secret)
            self._run_worker(workflow, item)
            self._report(workflow, item, jira)

    # -- Steps of the demo ---------------------------------------------------------------

    def _setup(self, jira_url: str) -> Workflow:
        self._heading("1. A Jira connection and a workflow: an action, a filter, a branch")
        profile = ConnectionProfile.objects.filter(key=JIRA_KEY).first() or ConnectionProfile(
            key=JIRA_KEY, connector_key="jira", name="Demo Jira (local stand-in)"
        )
        profile.config = {
            "url": jira_url,
            "email": "demo@example.com",
            "api_token": "secret://demo-jira-token",
            "project_key": "DEMO",
        }
        # Jira can also send webhooks to /webhooks/demo_jira/; they are verified with this.
        profile.webhook_secrets = ["secret://demo-jira-webhook"]
        profile.save()
        steps: list[dict[str, Any]] = [
            {
                "name": "Create Jira issue",
                "type": "connector_action",
                "config": {
                    "profile": JIRA_KEY,
                    "action": "create_issue",
                    "input": {
                        "summary": "{{ event.payload.issue.title }}",
                        "description": "From {{ event.payload.repository.full_name }}",
                    },
                },
            },
            {
                "name": "Only opened issues",
                "type": "filter",
                "config": {"condition": "{{ event.payload.action == 'opened' }}"},
            },
            {
                "name": BRANCH,
                "type": "branch",
                "config": {
                    "if": "{{ 'bug' in event.payload.issue.labels | map(attribute='name') }}",
                    # A bug waits a moment (a follow-up would come after it): the run
                    # parks, holding no worker, and its timer resumes it.
                    "then": [
                        {"name": DELAY, "type": "delay", "config": {"seconds": DELAY_SECONDS}}
                    ],
                },
            },
        ]
        service = WorkflowService()
        workflow = Workflow.objects.filter(key=WORKFLOW_KEY).first()
        if workflow is None:
            workflow = service.create_workflow(
                name="Demo: GitHub issue to Jira",
                key=WORKFLOW_KEY,
                steps=steps,
                trigger={"connector": "github", "events": ["issues"]},
            )
        else:
            workflow = service.update_workflow(workflow, steps=steps)
        self.stdout.write(f"  workflow {workflow.key!r} v{workflow.version}: on github/issues")
        for step in steps:
            self.stdout.write(f"    - {step['name']} ({step['type']})")
            for nested in step["config"].get("then", []):
                self.stdout.write(f"        then: {nested['name']} ({nested['type']})")
        return workflow

    def _post(self, url: str, secret: str) -> OutboxItem:
        self._heading(f"2. A signed GitHub webhook: POST {url}")
        delivery = str(uuid.uuid4())
        body = json.dumps(
            {
                "action": "opened",
                # GitHub's payloads carry times like this one: each delivery's body differs,
                # and a body already accepted is a replay (see automate.replays).
                "issue": {
                    "number": 1,
                    "title": "Demo issue from automate_demo",
                    "labels": [{"name": "bug"}],
                    "updated_at": datetime.now(UTC).isoformat(timespec="microseconds"),
                },
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
        response = httpx.post(url, content=body, headers=headers, timeout=10)
        self.stdout.write(f"  answer: {response.status_code} {response.text}")
        if response.status_code != 202:
            raise CommandError(f"the webhook was not accepted ({response.status_code})")
        tampered = httpx.post(url, content=body + b" ", headers=headers, timeout=10)
        self.stdout.write(f"  the same request with a tampered body: {tampered.status_code}")

        item = OutboxItem.objects.get(pk=response.json()["id"])
        self.stdout.write("  stored outbox row:")
        for field in ("id", "connector_key", "event_type", "external_id", "trace_id", "headers"):
            self.stdout.write(f"    {field:14} {getattr(item, field)}")
        return item

    def _run_worker(self, workflow: Workflow, item: OutboxItem) -> None:
        self._heading("3. The embedded worker drains the outbox")
        counts = EmbeddedWorker(threads=1, poll_seconds=0).run(once=True)
        self.stdout.write(f"  outbox items processed: { ({str(k): v for k, v in counts.items()}) }")
        run = WorkflowRun.objects.filter(workflow=workflow, outbox_item=item).first()
        if run is None or run.status != RunStatus.WAITING:
            return  # _report says what became of it
        wait = run.waits.filter(status="waiting").first()
        until = wait.due_at if wait is not None else None
        self.stdout.write(
            f"  run #{run.pk}: {run.status} (parked on its delay until "
            f"{until.isoformat() if until else '?'}; no worker holds it)"
        )
        parked = time.monotonic()
        deadline = parked + DELAY_SECONDS + 30
        while run.status == RunStatus.WAITING and time.monotonic() < deadline:
            time.sleep(0.2)
            counts = EmbeddedWorker(threads=1, poll_seconds=0).run(once=True)
            run.refresh_from_db()
        self.stdout.write(
            f"  after {time.monotonic() - parked:.1f} s the delay's timer was due; the worker "
            f"resumed the run: {run.status}"
        )

    def _report(self, workflow: Workflow, item: OutboxItem, jira: FakeJira) -> None:
        item.refresh_from_db()
        run = WorkflowRun.objects.filter(workflow=workflow, outbox_item=item).first()
        if run is None:
            raise CommandError(f"no run was created for outbox item {item.pk} ({item.status})")
        self._heading(f"4. Run #{run.pk}: {run.status} (outbox item {item.status})")
        for step_run in run.step_runs.select_related("step").order_by("id"):
            self.stdout.write(
                f"  {step_run.step.name} [{step_run.status}, attempt {step_run.attempt}]"
            )
            self.stdout.write(f"    input:  {json.dumps(step_run.input)}")
            self.stdout.write(f"    output: {json.dumps(step_run.output)}")
        for step_run in run.step_runs.select_related("step").filter(status="succeeded"):
            if step_run.step.name == BRANCH:
                took = (step_run.output or {}).get("took")
                self.stdout.write(f"  the branch {BRANCH!r} took: {took}")
            elif step_run.step.name == DELAY:
                wait = run.waits.filter(step_run=step_run).first()
                if wait is not None and wait.resolved_at is not None:
                    waited = (wait.resolved_at - wait.created_at).total_seconds()
                    self.stdout.write(
                        f"  the delay {DELAY!r} parked the run for {waited:.1f} s "
                        f"(status waiting), then it resumed"
                    )
        self.stdout.write("  the local Jira received:")
        for request in jira.received:
            self.stdout.write(f"    POST {request['path']} {json.dumps(request['body'])}")
        if run.status != "completed":
            raise CommandError(f"the run ended {run.status}: {run.error}")
        self.stdout.write(
            self.style.SUCCESS(
                "Done. To look at it in the admin: python manage.py createsuperuser, "
                "python manage.py runserver, then open "
                f"http://127.0.0.1:8000/admin/automate/workflowrun/{run.pk}/change/"
            )
        )

    def _heading(self, text: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(text))
