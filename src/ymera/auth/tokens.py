"""JWT access tokens and opaque secrets (refresh tokens, API keys)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from ymera.config import Settings
from ymera.errors import Unauthorized

API_KEY_PREFIX = "ymk_"
# The first characters of a key, stored in clear to find its row; the rest is
# only ever compared through its SHA-256.
API_KEY_LOOKUP_LENGTH = 12
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

    def sign(self, purpose: str, message: str) -> str:
        """An HMAC of ``message`` for ``purpose`` (e.g. task callback tokens)."""
        mac = hmac.new(self._secret.encode(), f"{purpose}:{message}".encode(), hashlib.sha256)
        return mac.hexdigest()

    def verify(self, purpose: str, message: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(purpose, message), signature)

    def decode_access(self, token: str, *, now: datetime) -> dict[str, Any]:
        """Verify signature, issuer and type, and expiry against ``now`` (the app's
        clock, so tests can move time instead of waiting)."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                options={
                    "require": ["exp", "sub", "iss"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("Invalid access token", code="invalid_token") from exc
        if claims.get("typ") != "access" or not isinstance(claims.get("sub"), str):
            raise Unauthorized("Invalid access token", code="invalid_token")
        exp = claims["exp"]
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise Unauthorized("Invalid access token", code="invalid_token")
        if exp <= now.timestamp():
            raise Unauthorized("Access token expired", code="token_expired")
        return claims


def new_refresh_token() -> str:
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str]:
    """Return (full key, lookup prefix): ``ymk_`` and 43 URL-safe characters (256
    random bits); the prefix is the first 12 characters."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[:API_KEY_LOOKUP_LENGTH]
