"""Password hashing with Argon2id (pwdlib)."""

from __future__ import annotations

import functools
import secrets

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

_hasher = PasswordHash((Argon2Hasher(),))


@functools.cache
def _dummy_hash() -> str:
    """A valid hash to verify against when the user does not exist, so a login
    for an unknown name costs as much time as one for a known name. Made on first
    use, not at import (an Argon2 hash takes about 0.2 s of CPU)."""
    return _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    if password_hash is None:
        _hasher.verify(password, _dummy_hash())
        return False
    try:
        return bool(_hasher.verify(password, password_hash))
    except Exception:  # malformed hash in the database: treat as a failed login
        return False


def generate_password(length: int = 24) -> str:
    return secrets.token_urlsafe(length)[:length]
