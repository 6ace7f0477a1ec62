"""YMERA Python client: ``Client`` (blocking) and ``AsyncClient``."""

from ymera.client.aio import AsyncClient
from ymera.client.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    ValidationError,
    YmeraAPIError,
)
from ymera.client.sync import Client

__all__ = [
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "ValidationError",
    "YmeraAPIError",
]
