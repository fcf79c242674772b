"""Workflows that run on a schedule: ``trigger={"schedule": "0 9 * * 1-5", "timezone":
"Europe/Paris"}`` or ``trigger={"every": 30}``.

Data flow: :mod:`automate.services` validates the trigger (:mod:`.spec`) and keeps one
:class:`~automate.schedules.models.Schedule` row per scheduled workflow, with the time of
its next tick -> every poll of a worker or dispatcher (:func:`automate.dispatch.claim`)
calls :func:`.fire.fire_due`, one indexed query when nothing is due -> each due tick is a
:class:`~automate.schedules.models.ScheduleTick` row, unique on (workflow, tick), written
with its outbox item and its run in one transaction -> the run executes like any other.
The unique row, not a lock held in memory, makes a tick fire once across processes and
machines; no Celery beat is needed.
"""
