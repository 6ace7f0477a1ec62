"""JWT access tokens and opaque secrets (refresh tokens, API keys)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from ymera.config import Settings
from ymera.errors import Unauthorized

API_KEY_PREFIX = "ymk_"
REFRESH_TOKEN_PREFIX = "ymr_"  # noqa: S105 - a prefix, not a secret


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def resolve_secret_key(settings: Settings) -> str:
    """The JWT key: from settings, else generated once and kept in the data dir."""
    if settings.auth.secret_key is not None:
        return settings.auth.secret_key.get_secret_value()
    path = Path(settings.data_dir) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # O_EXCL: if two processes race, one wins and the other reads its key.
    try:
        fd = path.open("x")
    except FileExistsError:
        return path.read_text().strip()
    with fd:
        fd.write(key)
    path.chmod(0o600)
    return key


@dataclass(frozen=True)
class AccessClaims:
    subject: str
    role: str
    expires_at: datetime
    token_id: str


class TokenCodec:
    def __init__(self, *, secret: str, algorithm: str, issuer: str, access_ttl: int) -> None:
        self._secret = secret
        self._algorithm = algorithm
        self._issuer = issuer
        self.access_ttl = access_ttl

    def issue_access(self, *, user_id: str, role: str, now: datetime) -> tuple[str, datetime]:
        expires = now + timedelta(seconds=self.access_ttl)
        claims: dict[str, Any] = {
            "sub": user_id,
            "role": role,
            "iss": self._issuer,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": secrets.token_hex(8),
            "typ": "access",
        }
        return jwt.encode(claims, self._secret, algorithm=self._algorithm), expires

    def decode_access(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                options={"require": ["exp", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("Access token expired", code="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("Invalid access token", code="invalid_token") from exc
        if claims.get("typ") != "access":
            raise Unauthorized("Invalid access token", code="invalid_token")
        return claims


def new_refresh_token() -> str:
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str]:
    """Return (full key, lookup prefix). The prefix is the first 12 characters."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[:12]
