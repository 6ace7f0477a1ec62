"""Rendering errors as RFC 9457 problem+json: the handlers
:func:`install_handlers` puts on the app for :class:`~ymera.errors.YmeraError`,
request-validation errors, Starlette's HTTP errors, database errors a client
caused, and anything unexpected.

Apart from :mod:`ymera.errors` (the exception classes every layer raises) so
that importing those does not import the web framework: every CLI command
reaches them through the services, and FastAPI costs about 0.2 s to import.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.routing import Match
from starlette.websockets import WebSocket, WebSocketState

from ymera.errors import PROBLEM_JSON, YmeraError

log = structlog.get_logger("ymera.errors")


def problem(
    request: HTTPConnection,
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


async def _render(
    conn: HTTPConnection,
    *,
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse | None:
    """The problem response; on a WebSocket, a refusal the client can see.

    Before the handshake is accepted the problem is sent as an HTTP denial
    response when the server supports the ``websocket.http.response`` extension
    (uvicorn does), else the handshake is closed (the server answers 403). After
    it is accepted, the socket is closed with code ``4000 + status`` (4401, 4403,
    4404, ...) and the detail as the reason.
    """
    if isinstance(conn, WebSocket):
        accepted = conn.application_state == WebSocketState.CONNECTED
        if not accepted and "websocket.http.response" in conn.scope.get("extensions", {}):
            return problem(conn, status=status, code=code, detail=detail, headers=headers, **extra)
        if conn.application_state != WebSocketState.DISCONNECTED:
            close_code = 4000 + status if 400 <= status < 600 else 1008
            await conn.close(code=close_code, reason=detail[:120])
        return None
    return problem(conn, status=status, code=code, detail=detail, headers=headers, **extra)


async def _ymera_error(conn: HTTPConnection, exc: Exception) -> JSONResponse | None:
    assert isinstance(exc, YmeraError)
    return await _render(
        conn,
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


async def _validation_error(conn: HTTPConnection, exc: Exception) -> JSONResponse | None:
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
    return await _render(
        conn,
        status=422,
        code="validation_error",
        detail=f"{where}: {first['msg']}" if where else str(first["msg"]),
        errors=_jsonable(errors),
    )


def _allowed_methods(conn: HTTPConnection) -> list[str]:
    """Every method served at this path by its most specific route template.

    Starlette answers 405 from the first route whose path matches, so its
    ``Allow`` lists only that route's methods, although routes for other
    methods of the same path follow it. Among matching templates the one with
    the fewest parameters names the resource (``/tasks/batch``, not
    ``/tasks/{task_id}``).
    """
    by_specificity: dict[int, set[str]] = {}
    for route in iter_route_contexts(conn.app.router.routes):
        route_methods = route.methods
        if not route_methods:
            continue
        match, _ = route.matches(conn.scope)
        if match is not Match.NONE:
            params = len(getattr(route, "param_convertors", None) or {})
            by_specificity.setdefault(params, set()).update(route_methods)
    if not by_specificity:
        return []
    return sorted(by_specificity[min(by_specificity)])


async def _http_error(conn: HTTPConnection, exc: Exception) -> JSONResponse | None:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and conn.scope["type"] == "http":
        methods = _allowed_methods(conn)
        if methods:
            headers["Allow"] = ", ".join(methods)
    return await _render(
        conn,
        status=exc.status_code,
        code=_STATUS_CODES.get(exc.status_code, "http_error"),
        detail=detail,
        headers=headers,
    )


# PostgreSQL refuses NUL (and text its encoding cannot hold) in text values:
# character_not_in_repertoire, untranslatable_character. Such text can only come
# from the client (a %00 in a path or query, a \u0000 in JSON), so it is a 400
# for every endpoint, not a 500.
_UNSTORABLE_TEXT_SQLSTATES = frozenset({"22021", "22P05"})


async def _database_error(conn: HTTPConnection, exc: Exception) -> JSONResponse | None:
    assert isinstance(exc, DBAPIError)
    if getattr(exc.orig, "sqlstate", None) not in _UNSTORABLE_TEXT_SQLSTATES:
        raise exc  # a real server error: the 500 path logs it
    return await _render(
        conn,
        status=400,
        code="invalid_text",
        detail="Text contains a character that cannot be stored (such as NUL)",
    )


async def _unexpected(conn: HTTPConnection, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=conn.url.path, error=repr(exc))
    return problem(conn, status=500, code="internal_error", detail="Internal server error")


def install_handlers(app: FastAPI) -> None:
    # Typed Any: Starlette's signature wants separate Request and WebSocket
    # handlers; these serve both through HTTPConnection.
    handlers: dict[type[Exception], Any] = {
        YmeraError: _ymera_error,
        RequestValidationError: _validation_error,
        StarletteHTTPException: _http_error,
        DBAPIError: _database_error,
        Exception: _unexpected,
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)
