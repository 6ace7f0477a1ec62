"""Request building and response handling shared by the sync and async clients."""

from __future__ import annotations

from typing import Any

import httpx

from ymera.client.errors import error_from_response

DEFAULT_TIMEOUT = 30.0
# A task in one of these states will not change again (unless retried by hand).
FINAL_TASK_STATUSES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "DEAD"})
WORKSPACES = "/api/v1/workspaces"
WORKFLOWS = "/api/v1/workflows"
WORKFLOW_RUNS = "/api/v1/workflow-runs"
CHAT = "/api/v1/chat/sessions"
FILES = "/api/v1/files"
# A workflow run in one of these states will not change again (unless retried).
FINAL_RUN_STATUSES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def clean_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def idempotency_headers(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


def task_body(type: str, input: dict[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": type, "input": input or {}, **fields}


def handle(response: httpx.Response) -> Any:
    """Return the decoded body, or raise the typed error the problem+json describes."""
    if response.status_code == 204:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        return body
    raise error_from_response(response.status_code, body, response.text)


def handle_text(response: httpx.Response) -> str:
    """Return a text body (a diff), or raise the typed error the problem+json describes."""
    if response.is_success:
        return response.text
    try:
        body = response.json()
    except ValueError:
        body = None
    raise error_from_response(response.status_code, body, response.text)


def review_body(comment: str | None) -> dict[str, Any]:
    return {"comment": comment} if comment else {}


def message_body(
    content: str, file_ids: list[str] | None, to: dict[str, Any] | str | None
) -> dict[str, Any]:
    """A chat message; ``to`` an agent's name (str) or an address (dict)."""
    body: dict[str, Any] = {"content": content, "file_ids": list(file_ids or [])}
    if to is not None:
        body["to"] = {"agent": to} if isinstance(to, str) else to
    return body


def participant_ref(ref: str) -> dict[str, str]:
    """``agent:NAME`` (or an agent id after ``agent:``) or a user (id or username)."""
    if ref.startswith("agent:"):
        return {"agent": ref[len("agent:") :]}
    return {"user": ref[len("user:") :] if ref.startswith("user:") else ref}
