"""One error model for the whole API, rendered as RFC 9457 problem+json.

Domain code raises subclasses of :class:`YmeraError`; each carries its HTTP status
and a stable machine ``code``. :mod:`ymera.problems` renders them (and
request-validation errors, Starlette HTTP errors and anything unexpected) in the
same shape; this module imports no web framework.
"""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"


class YmeraError(Exception):
    """Base of every expected failure."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.extra = extra


class BadRequest(YmeraError):
    status_code = 400
    code = "bad_request"


class Unauthorized(YmeraError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str = "Authentication required", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kw)


class Forbidden(YmeraError):
    status_code = 403
    code = "forbidden"


class NotFound(YmeraError):
    status_code = 404
    code = "not_found"


class Conflict(YmeraError):
    status_code = 409
    code = "conflict"


class Unprocessable(YmeraError):
    status_code = 422
    code = "validation_error"


class TooManyRequests(YmeraError):
    status_code = 429
    code = "rate_limited"


class ServiceUnavailable(YmeraError):
    status_code = 503
    code = "unavailable"


class ShuttingDown(ServiceUnavailable):
    """This replica is shutting down and takes no new work: retry (another replica,
    or this one once restarted). Nothing was done, so a retry is always safe."""

    code = "shutting_down"
    retry_after = 2  # seconds

    def __init__(self, message: str = "Server is shutting down; retry", **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(self.retry_after)})
        kw.setdefault("retry_after", self.retry_after)
        super().__init__(message, **kw)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": True,
}


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _problem_response("Bad request"),
    401: _problem_response("Missing or invalid credentials"),
    403: _problem_response("Missing permission"),
    404: _problem_response("Not found"),
    409: _problem_response("Conflict with the current state"),
    413: _problem_response("Body too large"),
    415: _problem_response("Unsupported media type"),
    422: _problem_response("Invalid input"),
    429: _problem_response("Rate limited; see Retry-After"),
}
SHUTTING_DOWN_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: _problem_response("Shutting down (code `shutting_down`): retry after Retry-After"),
}
