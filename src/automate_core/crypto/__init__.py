"""Encryption of values stored in the database, in three layers.

* :mod:`~automate_core.crypto.fernet`: ``encrypt``/``decrypt``/``rotate`` with the Fernet
  keys of ``AUTOMATE["ENCRYPTION_KEYS"]`` (newest first: the first encrypts, every key
  decrypts). Without keys, storing a value is refused with an instructive error.
* :mod:`~automate_core.crypto.sealed`: the one stored form of a credential field, a
  ``secret://NAME`` reference as written or the value encrypted behind ``fernet:``
  (``seal``/``unseal``/``reseal``).
* :mod:`~automate_core.crypto.sealed_fields`: the fields each app registers in its
  ``AppConfig.ready()``, which ``manage.py automate_rotate_secrets`` re-encrypts.

Import the names from here; the submodules are layers, not separate APIs.
"""

from automate_core.crypto.fernet import decrypt, encrypt, rotate
from automate_core.crypto.sealed import SEALED_PREFIX, is_sealed, reseal, seal, unseal
from automate_core.crypto.sealed_fields import SealedField, Shape, register_sealed, sealed_fields

__all__ = [
    "SEALED_PREFIX",
    "SealedField",
    "Shape",
    "decrypt",
    "encrypt",
    "is_sealed",
    "register_sealed",
    "reseal",
    "rotate",
    "seal",
    "sealed_fields",
    "unseal",
]
