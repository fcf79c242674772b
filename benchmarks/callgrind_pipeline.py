"""Instructions per event through the worker's batch, counted by callgrind.

    python -m benchmarks.callgrind_pipeline [--events 400] [--batch 50]
                                            [--observability on|off] [--db NAME]
                                            [--path plain|event|delay]

Runs, under ``valgrind --tool=callgrind``, a process that enqueues ``--events`` events
for the two-step no-op workflow (each inside a span of its own when tracing is on, so
the row carries a ``traceparent`` as a webhook's does), then claims and runs them
``--batch`` at a time through the Celery task's function (``dispatch.claim`` +
``tasks.process_items``, in process); and one that enqueues as many but runs only half.
The difference of their instruction counts, divided by the events it covers, is one
event's worker cost (claim, runs, steps, settlement, and the spans and metrics of each
when ``--observability on``) without start-up or enqueueing. Each process has a
database of its own, so neither claims the other's events.

``--path event`` counts a reply's instead (``benchmarks/parked.py``'s ``wait_for_event,
resuming``): both processes first park ``--events`` runs of ``[wait_for_event, no-op]``
(each past its first timer's look), then store a matching reply for each; the measured
part claims the replies and runs them, each winning its wait and resuming its run in the
same pass. ``--path delay`` counts a due delay's (``benchmarks/parked.py``'s ``delay,
resuming``): both processes first park ``--events`` runs of ``[delay of an hour, no-op]``,
then bring every waiting delay's deadline and timer to now; the measured part claims the
timers (``_resume`` items) and runs them, each taking its wait and its run over and
resuming the run in the same pass. ``--path plain`` (the default) runs the same two-step
no-op workflow as before.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from benchmarks import common

DB = "automate_bench_callgrind_pipeline"


def _timeless() -> None:
    """Nothing that depends on how long the run takes (under callgrind, a hundred times
    longer): no settlement in the middle of a batch (``FLUSH_SECONDS``), no lease renewal,
    one heartbeat."""
    from django.conf import settings

    from automate import batch

    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "WORKER_HEARTBEAT_SECONDS": 10**9,
        "OUTBOX_LEASE_SECONDS": 10**6,
    }
    batch.FLUSH_SECONDS = 10.0**9


def child(url: str, events: int, run: int, batch: int, path: str = "plain") -> None:
    """The measured process: enqueue ``events``, warm up, then run ``run`` of them (for
    ``path`` ``event``: park ``events`` runs first, then enqueue and run their replies)."""
    common.setup_django(url)
    _timeless()
    import uuid

    from django.utils import timezone

    from automate import dispatch, tasks
    from automate.flow.models import RunWait, WaitKind
    from automate.models import RESUME_CONNECTOR_KEY
    from automate_core.models import OutboxItem
    from automate_core.observability import spans
    from automate_core.outbox import queue

    def send(prefix: str, n: int, event_type: str, payload: dict) -> None:
        with spans.span("bench.webhook", kind="server"):
            queue.enqueue(
                "github",
                event_type=event_type,
                payload=payload,
                external_id=f"{prefix}-{n}",
                trace_id=uuid.uuid4().hex,
            )

    def enqueue(prefix: str, count: int) -> None:
        for n in range(count):
            if path == "plain":
                send(prefix, n, "pull_request", {"action": "opened", "number": n})
            elif path == "delay":  # runs that park for an hour
                send(f"{prefix}-delay", n, "parked.delay", {"n": n})
            else:  # runs that park, each waiting for the reply of its own key
                send(f"{prefix}-wait", n, "parked.wait", {"key": f"{prefix}{n}"})
        if path == "delay":
            parking = dispatch.claim(count)
            tasks.process_items([[i.pk, i.lease_token] for i in parking])  # parked
            now = timezone.now()  # as if the hour had passed: the timers are due
            RunWait.objects.filter(kind=WaitKind.DELAY, status="waiting").update(due_at=now)
            OutboxItem.objects.filter(connector_key=RESUME_CONNECTOR_KEY, status="pending").update(
                available_at=now
            )
        if path == "event":
            parking = dispatch.claim(count)
            tasks.process_items([[i.pk, i.lease_token] for i in parking])  # parked
            first_looks = dispatch.claim(count)  # the waits' first timers: no early reply
            tasks.process_items([[i.pk, i.lease_token] for i in first_looks])
            for n in range(count):
                send(f"{prefix}-reply", n, "parked.reply", {"key": f"{prefix}{n}"})

    def drain(count: int) -> None:
        while count > 0:
            items = dispatch.claim(min(batch, count))
            if not items:
                raise SystemExit(f"{count} events left unclaimed")
            counts = tasks.process_items([[i.pk, i.lease_token] for i in items])
            if counts != {"done": len(items)}:
                raise SystemExit(f"batch: {counts}")
            count -= len(items)

    enqueue("warm", batch)
    drain(batch)
    enqueue("e", events)
    drain(run)


def _instructions(args, url: str, run: int) -> int:
    child = ["benchmarks.callgrind_pipeline", "--child", "--db-url", url, "--path", args.path]
    child += ["--events", str(args.events), "--run", str(run), "--batch", str(args.batch)]
    return common.callgrind_instructions(child, observability=args.observability)


def _prepared(name: str, path: str) -> str:
    url = common.scratch_database(name)
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        env=common.env_for(url),
        check=True,
    )
    code = "from benchmarks import common; common.create_noop_workflow('Bench', 'pull_request')"
    if path in ("event", "delay"):
        code = "from benchmarks import common; common.parked_workflows()"
    subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"],
                   env=common.env_for(url), check=True, cwd=common.ROOT)  # fmt: skip
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--db", default=DB)
    parser.add_argument("--observability", choices=("on", "off"))
    parser.add_argument("--path", choices=("plain", "event", "delay"), default="plain")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--db-url")
    parser.add_argument("--run", type=int)
    args = parser.parse_args()
    if args.child:
        child(args.db_url, args.events, args.run, args.batch, args.path)
        return
    names = [f"{args.db}_full", f"{args.db}_half"]
    try:
        full_url, half_url = (_prepared(name, args.path) for name in names)
        half = args.events // 2
        with ThreadPoolExecutor(2) as pool:  # both at once: counts, not time
            full_run = pool.submit(_instructions, args, full_url, args.events)
            half_run = pool.submit(_instructions, args, half_url, half)
            full, half_count = full_run.result(), half_run.result()
        per_event = (full - half_count) / (args.events - half)
        print(json.dumps({"instructions_per_event": round(per_event)}), flush=True)
    finally:
        for name in names:
            common.drop_database(name)


if __name__ == "__main__":
    main()
