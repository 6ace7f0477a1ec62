"""Async client (same methods as :class:`ymera.client.Client`, awaitable)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ymera.client._base import (
    CHAT,
    DEFAULT_TIMEOUT,
    FILES,
    FINAL_RUN_STATUSES,
    FINAL_TASK_STATUSES,
    WORKFLOW_RUNS,
    WORKFLOWS,
    WORKSPACES,
    auth_headers,
    clean_params,
    handle,
    handle_text,
    idempotency_headers,
    message_body,
    participant_ref,
    review_body,
    task_body,
)


class AsyncClient:
    """Async YMERA API client; use as ``async with AsyncClient(url, api_key=...) as c``."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = api_key or token
        self._refresh: str | None = None
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        headers = {**auth_headers(self._token), **kw.pop("headers", {})}
        if "params" in kw:
            kw["params"] = clean_params(kw["params"])
        return handle(await self._http.request(method, path, headers=headers, **kw))

    async def login(self, username: str, password: str) -> dict[str, Any]:
        pair = await self.request(
            "POST", "/api/v1/auth/token", data={"username": username, "password": password}
        )
        self._token = pair["access_token"]
        self._refresh = pair["refresh_token"]
        return dict(pair)

    async def refresh(self) -> dict[str, Any]:
        pair = await self.request(
            "POST", "/api/v1/auth/refresh", json={"refresh_token": self._refresh}
        )
        self._token = pair["access_token"]
        self._refresh = pair["refresh_token"]
        return dict(pair)

    async def me(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/api/v1/auth/me"))

    async def create_user(
        self, username: str, password: str, role: str = "viewer"
    ) -> dict[str, Any]:
        body = {"username": username, "password": password, "role": role}
        return dict(await self.request("POST", "/api/v1/users", json=body))

    async def list_users(self, *, cursor: str | None = None, limit: int = 50) -> dict[str, Any]:
        params = {"cursor": cursor, "limit": limit}
        return dict(await self.request("GET", "/api/v1/users", params=params))

    async def create_api_key(
        self,
        name: str,
        *,
        scopes: list[str] | None = None,
        agent_id: str | None = None,
        expires_at: str | None = None,
    ) -> dict[str, Any]:
        body = clean_params(
            {"name": name, "scopes": scopes, "agent_id": agent_id, "expires_at": expires_at}
        )
        return dict(await self.request("POST", "/api/v1/api-keys", json=body))

    async def list_api_keys(self, **params: Any) -> dict[str, Any]:
        return dict(await self.request("GET", "/api/v1/api-keys", params=params))

    async def revoke_api_key(self, key_id: str) -> dict[str, Any]:
        return dict(await self.request("DELETE", f"/api/v1/api-keys/{key_id}"))

    async def create_agent(self, name: str, **fields: Any) -> dict[str, Any]:
        return dict(await self.request("POST", "/api/v1/agents", json={"name": name, **fields}))

    async def get_agent(self, agent_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/api/v1/agents/{agent_id}"))

    async def list_agents(self, **params: Any) -> dict[str, Any]:
        return dict(await self.request("GET", "/api/v1/agents", params=params))

    async def iter_agents(self, **params: Any) -> AsyncIterator[dict[str, Any]]:
        cursor = None
        while True:
            page = await self.list_agents(**params, cursor=cursor)
            for item in page["items"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def update_agent(self, agent_id: str, **fields: Any) -> dict[str, Any]:
        return dict(await self.request("PATCH", f"/api/v1/agents/{agent_id}", json=fields))

    async def delete_agent(self, agent_id: str, *, force: bool = False) -> None:
        await self.request("DELETE", f"/api/v1/agents/{agent_id}", params={"force": force or None})

    async def pause_agent(self, agent_id: str, reason: str | None = None) -> dict[str, Any]:
        return dict(
            await self.request(
                "POST", f"/api/v1/agents/{agent_id}/pause", params={"reason": reason}
            )
        )

    async def resume_agent(self, agent_id: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/api/v1/agents/{agent_id}/resume"))

    async def heartbeat(self, agent_id: str, load: int | None = None) -> dict[str, Any]:
        body = {"load": load} if load is not None else None
        return dict(await self.request("POST", f"/api/v1/agents/{agent_id}/heartbeat", json=body))

    async def set_agent_status(
        self, agent_id: str, status: str, reason: str | None = None
    ) -> dict[str, Any]:
        body = clean_params({"status": status, "reason": reason})
        return dict(await self.request("POST", f"/api/v1/agents/{agent_id}/status", json=body))

    async def agent_metrics(
        self, agent_id: str, window: str = "1h", *, task_type: str | None = None
    ) -> dict[str, Any]:
        params = {"window": window, "task_type": task_type}
        return dict(await self.request("GET", f"/api/v1/agents/{agent_id}/metrics", params=params))

    async def submit_task(
        self,
        type: str,
        input: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        return dict(
            await self.request(
                "POST",
                "/api/v1/tasks",
                json=task_body(type, input, fields),
                headers=idempotency_headers(idempotency_key),
            )
        )

    async def submit_tasks(
        self, tasks: list[dict[str, Any]], *, idempotency_key: str | None = None
    ) -> list[dict[str, Any]]:
        return list(
            await self.request(
                "POST",
                "/api/v1/tasks/batch",
                json={"tasks": tasks},
                headers=idempotency_headers(idempotency_key),
            )
        )

    async def get_task(self, task_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/api/v1/tasks/{task_id}"))

    async def list_tasks(self, **filters: Any) -> dict[str, Any]:
        return dict(await self.request("GET", "/api/v1/tasks", params=filters))

    async def iter_tasks(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        cursor = None
        while True:
            page = await self.list_tasks(**filters, cursor=cursor)
            for item in page["items"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def cancel_task(self, task_id: str, reason: str | None = None) -> dict[str, Any]:
        return dict(
            await self.request("POST", f"/api/v1/tasks/{task_id}/cancel", params={"reason": reason})
        )

    async def retry_task(self, task_id: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/api/v1/tasks/{task_id}/retry"))

    async def task_feedback(
        self, task_id: str, score: float, comment: str | None = None
    ) -> dict[str, Any]:
        body = clean_params({"score": score, "comment": comment})
        return dict(await self.request("POST", f"/api/v1/tasks/{task_id}/feedback", json=body))

    async def task_routing(self, task_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/api/v1/tasks/{task_id}/routing"))

    async def wait_task(
        self, task_id: str, timeout: float = 60.0, *, interval: float = 0.5
    ) -> dict[str, Any]:
        """Poll until the task is SUCCEEDED, FAILED, CANCELLED or DEAD and return it;
        raise ``TimeoutError`` (naming the last state seen) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            task = await self.get_task(task_id)
            if task["status"] in FINAL_TASK_STATUSES:
                return task
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"task {task_id} still {task['status']} after {timeout}s")
            await asyncio.sleep(min(interval, left))

    async def list_events(self, **params: Any) -> dict[str, Any]:
        return dict(await self.request("GET", "/api/v1/events", params=params))

    # workspaces (code editor: docs/code-editor.md)
    async def create_workspace(self, name: str, **fields: Any) -> dict[str, Any]:
        """Create an empty workspace (``init_git=True``: a git repository), or a clone of
        a local repository (``source="git", git_path=...``)."""
        return dict(await self.request("POST", WORKSPACES, json={"name": name, **fields}))

    async def get_workspace(self, workspace_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"{WORKSPACES}/{workspace_id}"))

    async def list_workspaces(self, **params: Any) -> dict[str, Any]:
        return dict(await self.request("GET", WORKSPACES, params=params))

    async def workspace_tree(self, workspace_id: str, path: str | None = None) -> dict[str, Any]:
        """Every file (size, sha256), directory and symlink below ``path``."""
        params = {"path": path}
        return dict(await self.request("GET", f"{WORKSPACES}/{workspace_id}/tree", params=params))

    async def view_file(
        self, workspace_id: str, path: str, *, start: int | None = None, end: int | None = None
    ) -> dict[str, Any]:
        """A file's numbered lines (``start``..``end``, 1-based) and its sha256."""
        params = {"path": path, "start": start, "end": end}
        return dict(await self.request("GET", f"{WORKSPACES}/{workspace_id}/view", params=params))

    async def editor_command(
        self, workspace_id: str, command: str, **fields: Any
    ) -> dict[str, Any]:
        """One text-editor command: ``view``, ``create``, ``str_replace``, ``insert``,
        ``undo``, with its fields (``path``, ``old_str``, ``propose``, ...)."""
        body = {"command": command, **fields}
        return dict(await self.request("POST", f"{WORKSPACES}/{workspace_id}/editor", json=body))

    async def apply_patch(self, workspace_id: str, patch: str, **fields: Any) -> dict[str, Any]:
        """Apply a unified diff, all files or none (``dry_run``, ``propose``, ``fuzz``)."""
        body = {"patch": patch, **fields}
        return dict(await self.request("POST", f"{WORKSPACES}/{workspace_id}/patches", json=body))

    async def list_edits(self, workspace_id: str, **params: Any) -> dict[str, Any]:
        """Edits, newest first (``status``, ``session_id``, ``cursor``, ``limit``)."""
        return dict(await self.request("GET", f"{WORKSPACES}/{workspace_id}/edits", params=params))

    async def get_edit(self, workspace_id: str, edit_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"{WORKSPACES}/{workspace_id}/edits/{edit_id}"))

    async def approve_edit(
        self, workspace_id: str, edit_id: str, comment: str | None = None
    ) -> dict[str, Any]:
        path = f"{WORKSPACES}/{workspace_id}/edits/{edit_id}/approve"
        return dict(await self.request("POST", path, json=review_body(comment)))

    async def reject_edit(
        self, workspace_id: str, edit_id: str, comment: str | None = None
    ) -> dict[str, Any]:
        path = f"{WORKSPACES}/{workspace_id}/edits/{edit_id}/reject"
        return dict(await self.request("POST", path, json=review_body(comment)))

    async def apply_edit(
        self, workspace_id: str, edit_id: str, *, allow_rebase: bool = False, fuzz: int = 0
    ) -> dict[str, Any]:
        """Write an APPROVED edit (``allow_rebase``: even if its files changed since,
        when its diff still applies)."""
        path = f"{WORKSPACES}/{workspace_id}/edits/{edit_id}/apply"
        body = {"allow_rebase": allow_rebase, "fuzz": fuzz}
        return dict(await self.request("POST", path, json=body))

    async def revert_edit(
        self, workspace_id: str, edit_id: str, title: str | None = None
    ) -> dict[str, Any]:
        """Revert an APPLIED edit; returns the revert (an edit of its own)."""
        path = f"{WORKSPACES}/{workspace_id}/edits/{edit_id}/revert"
        return dict(await self.request("POST", path, json={"title": title} if title else {}))

    async def list_edit_sessions(self, workspace_id: str, **params: Any) -> dict[str, Any]:
        """Edit sessions, newest first (``task_id``: the session of that task)."""
        return dict(
            await self.request("GET", f"{WORKSPACES}/{workspace_id}/sessions", params=params)
        )

    async def session_diff(self, workspace_id: str, session_id: str) -> str:
        """What a session's applied edits changed, as one unified diff."""
        path = f"{WORKSPACES}/{workspace_id}/sessions/{session_id}/diff"
        return handle_text(await self._http.get(path, headers=auth_headers(self._token)))

    # chat (docs/chat.md)
    async def create_chat_session(
        self, title: str, participants: list[str] | None = None
    ) -> dict[str, Any]:
        """A session with participants: usernames/user ids, or ``agent:NAME``."""
        body = {"title": title, "participants": [participant_ref(p) for p in participants or []]}
        return dict(await self.request("POST", CHAT, json=body))

    async def list_chat_sessions(self, **params: Any) -> dict[str, Any]:
        return dict(await self.request("GET", CHAT, params=params))

    async def get_chat_session(self, session_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"{CHAT}/{session_id}"))

    async def archive_chat_session(self, session_id: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"{CHAT}/{session_id}/archive"))

    async def add_chat_participant(self, session_id: str, ref: str) -> dict[str, Any]:
        path = f"{CHAT}/{session_id}/participants"
        return dict(await self.request("POST", path, json=participant_ref(ref)))

    async def remove_chat_participant(self, session_id: str, participant_id: str) -> None:
        await self.request("DELETE", f"{CHAT}/{session_id}/participants/{participant_id}")

    async def post_chat_message(
        self,
        session_id: str,
        content: str,
        *,
        file_ids: list[str] | None = None,
        to: dict[str, Any] | str | None = None,
    ) -> dict[str, Any]:
        """Post a message; ``to`` (an agent's name, or ``{"agent_type": ...}``...) asks an agent."""
        body = message_body(content, file_ids, to)
        return dict(await self.request("POST", f"{CHAT}/{session_id}/messages", json=body))

    async def chat_history(self, session_id: str, **params: Any) -> dict[str, Any]:
        """A page of messages (``after_seq``, ``before_seq``, ``cursor``, ``limit``)."""
        return dict(await self.request("GET", f"{CHAT}/{session_id}/messages", params=params))

    # files (docs/files.md)
    async def upload_file(
        self,
        name: str,
        content: bytes | AsyncIterator[bytes],
        *,
        ttl_seconds: int | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        """Upload bytes (or an async iterator of chunks: streamed, never held whole)."""
        params = {"name": name, "ttl_seconds": ttl_seconds, "tag": tags}
        headers = {"Content-Type": "application/octet-stream"}
        return dict(
            await self.request("POST", FILES, params=params, content=content, headers=headers)
        )

    async def list_files(self, **params: Any) -> dict[str, Any]:
        return dict(await self.request("GET", FILES, params=params))

    async def get_file(self, file_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"{FILES}/{file_id}"))

    async def download_file(self, file_id: str) -> bytes:
        resp = await self._http.get(f"{FILES}/{file_id}/content", headers=auth_headers(self._token))
        if not resp.is_success:
            handle(resp)
        return resp.content

    async def delete_file(self, file_id: str) -> None:
        await self.request("DELETE", f"{FILES}/{file_id}")

    # workflows (docs/workflows.md)
    async def create_workflow(self, definition: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.request("POST", WORKFLOWS, json=definition))

    async def validate_workflow(self, definition: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.request("POST", f"{WORKFLOWS}/validate", json=definition))

    async def get_workflow(self, ref: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"{WORKFLOWS}/{ref}"))

    async def list_workflows(self, **params: Any) -> dict[str, Any]:
        return dict(await self.request("GET", WORKFLOWS, params=params))

    async def run_workflow(
        self, workflow: str, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body = {"workflow": workflow, "input": input or {}}
        return dict(await self.request("POST", WORKFLOW_RUNS, json=body))

    async def get_workflow_run(self, run_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"{WORKFLOW_RUNS}/{run_id}"))

    async def list_workflow_runs(self, **params: Any) -> dict[str, Any]:
        return dict(await self.request("GET", WORKFLOW_RUNS, params=params))

    async def cancel_workflow_run(self, run_id: str, reason: str | None = None) -> dict[str, Any]:
        path = f"{WORKFLOW_RUNS}/{run_id}/cancel"
        return dict(await self.request("POST", path, params={"reason": reason}))

    async def retry_workflow_run(self, run_id: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"{WORKFLOW_RUNS}/{run_id}/retry"))

    async def wait_workflow_run(
        self, run_id: str, timeout: float = 300.0, *, interval: float = 0.5
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = await self.get_workflow_run(run_id)
            if run["status"] in FINAL_RUN_STATUSES:
                return run
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"workflow run {run_id} still {run['status']} after {timeout}s")
            await asyncio.sleep(min(interval, left))

    # --- routing and learning ------------------------------------------------------------

    async def get_routing_policy(self) -> dict[str, Any]:
        """The global routing policy and the per-task-type overrides."""
        return dict(await self.request("GET", "/api/v1/routing/policy"))

    async def set_routing_policy(
        self,
        strategy: str,
        *,
        task_type: str | None = None,
        mode: str = "PASSIVE",
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Set the global policy (``task_type`` None) or one task type's."""
        body = {"task_type": task_type, "strategy": strategy, "mode": mode, "params": params or {}}
        return dict(await self.request("PUT", "/api/v1/routing/policy", json=body))

    async def learning_stats(
        self, *, agent_id: str | None = None, task_type: str | None = None
    ) -> dict[str, Any]:
        """What the learning engine knows per (agent, task type), and ejected agents."""
        params = {k: v for k, v in {"agent_id": agent_id, "task_type": task_type}.items() if v}
        return dict(await self.request("GET", "/api/v1/learning/stats", params=params))

    async def reset_learning(
        self, *, agent_id: str | None = None, task_type: str | None = None
    ) -> dict[str, Any]:
        """Forget what was learned (all, one agent's, one task type's)."""
        params = {k: v for k, v in {"agent_id": agent_id, "task_type": task_type}.items() if v}
        return dict(await self.request("POST", "/api/v1/learning/reset", params=params))

    async def remove_routing_policy(self, task_type: str) -> None:
        """Remove a task type's policy (it follows the global one again)."""
        await self.request("DELETE", f"/api/v1/routing/policy/{task_type}")

    # --- knowledge -------------------------------------------------------------------------

    async def add_experience(
        self,
        task_type: str,
        summary: str,
        *,
        notes: str = "",
        outcome: str | None = None,
        agent_id: str | None = None,
        task_id: str | None = None,
    ) -> dict[str, Any]:
        """Add an experience to the knowledge base."""
        body = {
            "task_type": task_type,
            "summary": summary,
            "notes": notes,
            "outcome": outcome,
            "agent_id": agent_id,
            "task_id": task_id,
        }
        return dict(await self.request("POST", "/api/v1/knowledge", json=body))

    async def get_experience(self, experience_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/api/v1/knowledge/{experience_id}"))

    async def delete_experience(self, experience_id: str) -> None:
        await self.request("DELETE", f"/api/v1/knowledge/{experience_id}")

    async def search_knowledge(
        self,
        q: str | None = None,
        *,
        task_type: str | None = None,
        agent_id: str | None = None,
        outcome: str | None = None,
        cursor: str | None = None,
        limit: int = 20,
    ) -> dict[str, Any]:
        """A page of experiences: ranked by relevance to ``q`` (web-search syntax),
        or newest first without it; ``next_cursor`` continues."""
        params = {
            "q": q,
            "type": task_type,
            "agent_id": agent_id,
            "outcome": outcome,
            "cursor": cursor,
            "limit": limit,
        }
        return dict(await self.request("GET", "/api/v1/knowledge", params=params))

    async def similar_experiences(
        self,
        *,
        task_id: str | None = None,
        text: str | None = None,
        task_type: str | None = None,
        outcome: str | None = None,
        limit: int = 5,
    ) -> list[dict[str, Any]]:
        """Past experiences like a task (``task_id``) or a ``text``, most similar first."""
        params = {
            "task_id": task_id,
            "text": text,
            "type": task_type,
            "outcome": outcome,
            "limit": limit,
        }
        return list(await self.request("GET", "/api/v1/knowledge/similar", params=params))

    async def knowledge_status(self) -> dict[str, Any]:
        """How the knowledge base ranks (text or hybrid) and why."""
        return dict(await self.request("GET", "/api/v1/knowledge/status"))
