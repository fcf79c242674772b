"""Celery mode in the test process: a Celery app per test, with broker pools of its own.

kombu keeps one connection pool (and one producer pool) per broker URL for the whole
process, and every Celery app sending to that URL borrows it from there. A test that
closed "its" pool in its teardown so closed every later test's, which then failed with
"Acquire on closed pool". The app built here takes its pools from no registry: its test
closes them and no other test holds them. The ``celery_broker`` and ``celery_queue``
fixtures of tests/conftest.py hand such apps out.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery
from celery.app.amqp import AMQP
from kombu import pools


class OwnPoolsAMQP(AMQP):
    """Producers drawn from the app's own connection pool, not kombu's registry."""

    @property
    def producer_pool(self) -> pools.ProducerPool:
        if self._producer_pool is None:
            self._producer_pool = pools.ProducerPool(self.app.pool, limit=self.app.pool.limit)
        return self._producer_pool

    publisher_pool = producer_pool


class OwnPoolsCelery(Celery):
    """A Celery app configured like a project's (``CELERY_*`` settings, automate.tasks)
    that sends to ``broker_url`` on a queue of its own and owns its broker pools."""

    amqp_cls = f"{__name__}:OwnPoolsAMQP"

    def __init__(self, broker_url: str, **conf: Any) -> None:
        super().__init__(
            f"automate-test-{uuid.uuid4().hex[:8]}",
            include=["automate.tasks"],
            set_as_current=False,
        )
        self.config_from_object("django.conf:settings", namespace="CELERY")
        self.conf.update(broker_url=broker_url, task_default_queue=f"{self.main}-queue", **conf)

    @property
    def pool(self) -> Any:
        if self._pool is None:
            self._pool = self.connection_for_write().Pool(limit=self.conf.broker_pool_limit)
        return self._pool

    def close_pools(self) -> None:
        """Close this app's broker connections (no other app uses them) and the app."""
        if self._pool is not None:
            self.amqp.producer_pool.force_close_all()
            self._pool.force_close_all()
        self.close()
