"""Typed errors raised by the client, mapped from problem+json ``code`` / status."""

from __future__ import annotations

from typing import Any


class YmeraAPIError(Exception):
    """An error answer from the server (problem+json)."""

    def __init__(self, status: int, code: str, detail: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body


class BadRequestError(YmeraAPIError): ...


class AuthenticationError(YmeraAPIError): ...


class PermissionDeniedError(YmeraAPIError): ...


class NotFoundError(YmeraAPIError): ...


class ConflictError(YmeraAPIError): ...


class ValidationError(YmeraAPIError): ...


class RateLimitedError(YmeraAPIError):
    @property
    def retry_after(self) -> float | None:
        value = self.body.get("retry_after")
        return float(value) if isinstance(value, int | float) else None


class ServerError(YmeraAPIError): ...


_BY_STATUS: dict[int, type[YmeraAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitedError,
}


def error_from_response(status: int, body: Any, text: str) -> YmeraAPIError:
    data = body if isinstance(body, dict) else {}
    code = str(data.get("code") or "http_error")
    detail = str(data.get("detail") or text[:500] or f"HTTP {status}")
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else YmeraAPIError)
    return cls(status, code, detail, data)
