"""The transactional outbox: every accepted event is a row before it is acknowledged.

:mod:`automate_core.outbox.models` holds :class:`OutboxItem`; :mod:`automate_core.outbox.queue`
enqueues, claims (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL), completes, retries
with backoff and dead-letters them.
"""
