"""One error model for the whole API, rendered as RFC 9457 problem+json.

Domain code raises subclasses of :class:`YmeraError`; each carries its HTTP status
and a stable machine ``code``. The handlers installed by :func:`install_handlers`
render them, request-validation errors, Starlette HTTP errors and anything
unexpected in the same shape.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"

log = structlog.get_logger("ymera.errors")


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


def problem(
    request: Request,
    *,
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {
        "type": f"urn:ymera:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.url.path,
    }
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


async def _ymera_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, YmeraError)
    return problem(
        request,
        status=exc.status_code,
        code=exc.code,
        detail=exc.message,
        headers=exc.headers,
        **exc.extra,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": list(err.get("loc", ())),
            "msg": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    return problem(
        request,
        status=422,
        code="validation_error",
        detail=f"{where}: {first['msg']}" if where else str(first["msg"]),
        errors=_jsonable(errors),
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem(
        request,
        status=exc.status_code,
        code=_STATUS_CODES.get(exc.status_code, "http_error"),
        detail=detail,
        headers=dict(exc.headers or {}),
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path, error=repr(exc))
    return problem(request, status=500, code="internal_error", detail="Internal server error")


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(YmeraError, _ymera_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


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
