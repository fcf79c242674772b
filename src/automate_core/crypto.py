"""Fernet encryption for values stored in the database (secrets, webhook keys, API keys).

``AUTOMATE["ENCRYPTION_KEYS"]`` lists Fernet keys newest first: the first encrypts, every key
decrypts, and :func:`rotate` re-encrypts a token under the newest key. Without keys there is
no encryption at rest, and storing a value is refused with an instructive error.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.core.exceptions import ImproperlyConfigured

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
    from automate_core import redaction

    redaction.remember(value)
    return value


def rotate(token: str) -> str:
    return _fernet().rotate(token.encode()).decode()


# -- Sealed values ---------------------------------------------------------------------
# A field that holds a credential stores either a ``secret://NAME`` reference (as written)
# or the value encrypted behind this prefix. One convention for every such field
# (connection profiles' webhook secrets, MCP servers' API keys), so rotation finds them all.

SEALED_PREFIX = "fernet:"


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def seal(value: str) -> str:
    """Store form of ``value``: a reference or an already sealed value as is, else encrypted."""
    from automate_core.secrets import is_reference

    if is_reference(value) or is_sealed(value):
        return value
    return SEALED_PREFIX + encrypt(value)


def unseal(value: str) -> str:
    """The plain value of a stored one: decrypted if sealed, else resolved as a reference."""
    from automate_core.secrets import resolve

    if is_sealed(value):
        return decrypt(value[len(SEALED_PREFIX) :])
    return resolve(value)


def reseal(value: str) -> str:
    """A sealed value re-encrypted under the newest key (others unchanged).

    Raises :class:`cryptography.fernet.InvalidToken` when no configured key decrypts it.
    """
    if not is_sealed(value):
        return value
    return SEALED_PREFIX + rotate(value[len(SEALED_PREFIX) :])
