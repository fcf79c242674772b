"""Fernet encryption for values stored in the database (secrets, webhook keys, API keys).

``AUTOMATE["ENCRYPTION_KEYS"]`` lists Fernet keys newest first: the first encrypts, every key
decrypts, and :func:`rotate` re-encrypts a token under the newest key. Without keys there is
no encryption at rest, and storing a value is refused with an instructive error.

Below :mod:`automate_core.secrets` (it resolves nothing), so the ``Secret`` model that a
secret backend reads can use it.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.core.exceptions import ImproperlyConfigured

from automate_core import redaction
from automate_core.conf import settings as automate_settings
from automate_core.providers.errors import AutomateError, ErrorCodes


def _fernet() -> MultiFernet:
    keys = automate_settings.ENCRYPTION_KEYS
    if not keys:
        raise ImproperlyConfigured(
            'Set AUTOMATE["ENCRYPTION_KEYS"] to a list of Fernet keys to store secrets in the '
            'database (make one with: python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"), or use secret:// references instead.'
        )
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            'AUTOMATE["ENCRYPTION_KEYS"] holds a value that is not a Fernet key'
        ) from exc


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        value = _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise AutomateError(
            ErrorCodes.CONFIGURATION,
            "a stored secret cannot be decrypted with any key in AUTOMATE['ENCRYPTION_KEYS']",
        ) from None
    redaction.remember(value)
    return value


def rotate(token: str) -> str:
    return _fernet().rotate(token.encode()).decode()
