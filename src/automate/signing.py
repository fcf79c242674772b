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

from automate.models import ConnectionProfile
from automate_core.secrets import SCHEME


def is_profile_signing_secret(name: str) -> bool:
    """True when a stored profile names ``secret://name`` among its webhook secrets.

    One query over the profiles' ``webhook_secrets`` column (encrypted values are not
    references and never match). A profile table is small, and JSON containment has no
    index on SQLite, so the lists are compared here rather than in SQL.
    """
    reference = SCHEME + name
    return any(
        reference in values
        for values in ConnectionProfile.objects.values_list("webhook_secrets", flat=True)
        if isinstance(values, list)
    )
