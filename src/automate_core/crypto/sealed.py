"""Sealed values: the one stored form of every field that holds a credential.

Such a field stores either a ``secret://NAME`` reference (as written) or the value
encrypted behind ``fernet:`` (connection profiles' webhook secrets, MCP servers' API
keys). Above both :mod:`automate_core.crypto.fernet` and :mod:`automate_core.secrets`:
sealing needs the one, unsealing a reference the other.
"""

from __future__ import annotations

from automate_core.crypto.fernet import decrypt, encrypt, rotate
from automate_core.secrets import is_reference, resolve

SEALED_PREFIX = "fernet:"


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def seal(value: str) -> str:
    """Store form of ``value``: a reference or an already sealed value as is, else encrypted."""
    if is_reference(value) or is_sealed(value):
        return value
    return SEALED_PREFIX + encrypt(value)


def unseal(value: str) -> str:
    """The plain value of a stored one: decrypted if sealed, else resolved as a reference."""
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
