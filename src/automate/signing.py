"""Whether a secret is a connection profile's webhook signing secret, read from the table.

:func:`automate.connections.signing_secret_references` keeps the profiles' signing secret
references for ``AUTOMATE["CONNECTION_CACHE_SECONDS"]`` and forgets them when THIS process
saves a profile; a profile saved by another process (a second web server, a worker, a
migration, ``manage.py shell``) reaches it only when that entry expires. Until then a
credential check asked only the cache would let the new signing secret out. The credential
check (:func:`automate_core.secrets.check_not_signing`) therefore asks
:func:`is_profile_signing_secret` as well, for every name the cache did not list: one
query per outbound credential checked, none per webhook.
"""

from __future__ import annotations

from django.db import connections, router

from automate.models import ConnectionProfile
from automate_core.secrets import SCHEME


def is_profile_signing_secret(name: str) -> bool:
    """True when a stored profile names ``secret://name`` among its webhook secrets.

    One query. Where the database compares JSON (PostgreSQL's ``jsonb @>``, MySQL's
    ``JSON_CONTAINS``) it answers yes or no and no list leaves it; SQLite has no JSON
    containment, so there the lists are read and compared here. Encrypted values are not
    references and never match.
    """
    reference = SCHEME + name
    profiles = ConnectionProfile.objects.all()
    if connections[router.db_for_read(ConnectionProfile)].features.supports_json_field_contains:
        return profiles.filter(webhook_secrets__contains=[reference]).exists()
    return any(
        reference in values
        for values in profiles.values_list("webhook_secrets", flat=True)
        if isinstance(values, list)
    )
