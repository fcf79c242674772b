"""Signals sent by Django Automate.

``event_accepted`` is sent after the transaction that stored a webhook's outbox row has
committed, with ``sender`` the connector key and ``item`` the :class:`OutboxItem`.
Dispatchers connect to it to start work at once instead of waiting for the next poll.
"""

from django.dispatch import Signal

event_accepted = Signal()
