"""Secrets encrypted at rest: the webhook signing secrets (and any other secret we must be able
to read back to sign with), encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`).

Keys come from SECRETS_ENCRYPTION_KEYS: comma-separated Fernet keys, the first encrypts and every
one decrypts (MultiFernet). Rotating the key: put a new key first, keep the old ones after it,
run `manage.py reencrypt_secrets`, then drop the old keys. Without any key (a development machine,
`make run`) a key is derived from SECRET_KEY, and `manage.py check --deploy` says so.

A stored value is `fernet:` + the token; a value without the prefix is plaintext from before
encryption (the migration encrypts those) and is read as is.
"""

import base64
import hashlib
import logging
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models

logger = logging.getLogger(__name__)

PREFIX = "fernet:"


class UndecryptableSecret(Exception):
    """A stored secret no configured key decrypts (the key it was encrypted with was dropped)."""


def development_key(secret_key):
    """A Fernet key derived from SECRET_KEY: only for machines without SECRETS_ENCRYPTION_KEYS."""
    digest = hashlib.sha256(b"experiments-dashboard secrets at rest\x00" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest)


@lru_cache(maxsize=8)
def cipher(keys, secret_key):
    if not keys:
        logger.warning("SECRETS_ENCRYPTION_KEYS is not set: secrets are encrypted with a key derived from SECRET_KEY")
        keys = (development_key(secret_key),)
    return MultiFernet([Fernet(key) for key in keys])


def current_cipher():
    return cipher(tuple(settings.SECRETS_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(text):
    if not text or text.startswith(PREFIX):
        return text
    return PREFIX + current_cipher().encrypt(text.encode()).decode()


def decrypt(stored):
    if not stored or not stored.startswith(PREFIX):
        return stored
    try:
        return current_cipher().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise UndecryptableSecret("No key in SECRETS_ENCRYPTION_KEYS decrypts this secret.") from None


def reencrypt(stored):
    """The value encrypted with the first key (MultiFernet.rotate); plaintext gets encrypted."""
    if not stored:
        return stored
    if not stored.startswith(PREFIX):
        return encrypt(stored)
    return PREFIX + current_cipher().rotate(stored[len(PREFIX) :].encode()).decode()


class EncryptedTextField(models.TextField):
    """A text field stored encrypted and read back in clear. Not searchable (each encryption differs)."""

    def from_db_value(self, value, expression, connection):
        return decrypt(value)

    def get_prep_value(self, value):
        return encrypt(super().get_prep_value(value))
