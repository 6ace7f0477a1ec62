"""Blocking client."""

from __future__ import annotations

import time
from collections.abc import Iterator
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


class Client:
    """Blocking YMERA API client.

    ``Client(url, api_key="ymk_...")`` or ``Client(url).login(username, password)``.
    Errors raise subclasses of :class:`ymera.client.YmeraAPIError`.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = api_key or token
        self._refresh: str | None = None
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        headers = {**auth_headers(self._token), **kw.pop("headers", {})}
        if "params" in kw:
            kw["params"] = clean_params(kw["params"])
        return handle(self._http.request(method, path, headers=headers, **kw))

    # auth
    def login(self, username: str, password: str) -> dict[str, Any]:
        """Log in; later calls use the access token."""
        pair = self.request(
            "POST", "/api/v1/auth/token", data={"username": username, "password": password}
        )
        self._token = pair["access_token"]
        self._refresh = pair["refresh_token"]
        return dict(pair)

    def refresh(self) -> dict[str, Any]:
        """Rotate the refresh token and take the new access token."""
        pair = self.request("POST", "/api/v1/auth/refresh", json={"refresh_token": self._refresh})
        self._token = pair["access_token"]
        self._refresh = pair["refresh_token"]
        return dict(pair)

    def me(self) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/auth/me"))

    # users
    def create_user(self, username: str, password: str, role: str = "viewer") -> dict[str, Any]:
        body = {"username": username, "password": password, "role": role}
        return dict(self.request("POST", "/api/v1/users", json=body))

    def list_users(self, *, cursor: str | None = None, limit: int = 50) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/users", params={"cursor": cursor, "limit": limit}))

    # API keys
    def create_api_key(
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
        return dict(self.request("POST", "/api/v1/api-keys", json=body))

    def list_api_keys(self, **params: Any) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/api-keys", params=params))

    def revoke_api_key(self, key_id: str) -> dict[str, Any]:
        return dict(self.request("DELETE", f"/api/v1/api-keys/{key_id}"))

    # agents
    def create_agent(self, name: str, **fields: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/api/v1/agents", json={"name": name, **fields}))

    def get_agent(self, agent_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/agents/{agent_id}"))

    def list_agents(self, **params: Any) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/agents", params=params))

    def iter_agents(self, **params: Any) -> Iterator[dict[str, Any]]:
        """Every agent matching the filters, following the cursor."""
        cursor = None
        while True:
            page = self.list_agents(**params, cursor=cursor)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def update_agent(self, agent_id: str, **fields: Any) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/api/v1/agents/{agent_id}", json=fields))

    def delete_agent(self, agent_id: str, *, force: bool = False) -> None:
        self.request("DELETE", f"/api/v1/agents/{agent_id}", params={"force": force or None})

    def pause_agent(self, agent_id: str, reason: str | None = None) -> dict[str, Any]:
        return dict(
            self.request("POST", f"/api/v1/agents/{agent_id}/pause", params={"reason": reason})
        )

    def resume_agent(self, agent_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/api/v1/agents/{agent_id}/resume"))

    def heartbeat(self, agent_id: str, load: int | None = None) -> dict[str, Any]:
        body = {"load": load} if load is not None else None
        return dict(self.request("POST", f"/api/v1/agents/{agent_id}/heartbeat", json=body))

    def set_agent_status(
        self, agent_id: str, status: str, reason: str | None = None
    ) -> dict[str, Any]:
        """Mark an agent DEGRADED, ERROR or OFFLINE by hand (IDLE clears DEGRADED/ERROR)."""
        body = clean_params({"status": status, "reason": reason})
        return dict(self.request("POST", f"/api/v1/agents/{agent_id}/status", json=body))

    def agent_metrics(
        self, agent_id: str, window: str = "1h", *, task_type: str | None = None
    ) -> dict[str, Any]:
        """Success rate, latency, throughput, load and quality over ``5m|1h|24h|7d``."""
        params = {"window": window, "task_type": task_type}
        return dict(self.request("GET", f"/api/v1/agents/{agent_id}/metrics", params=params))

    # tasks
    def submit_task(
        self,
        type: str,
        input: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Submit a task (``fields``: priority, required_capabilities, deadline, timeout,
        retry, file_ids, preferred_agents, excluded_agents, preferred_only). The same
        ``idempotency_key`` with the same body returns the original task."""
        return dict(
            self.request(
                "POST",
                "/api/v1/tasks",
                json=task_body(type, input, fields),
                headers=idempotency_headers(idempotency_key),
            )
        )

    def submit_tasks(
        self, tasks: list[dict[str, Any]], *, idempotency_key: str | None = None
    ) -> list[dict[str, Any]]:
        """Submit up to 1,000 tasks (each a dict like ``submit_task``'s body) at once."""
        return list(
            self.request(
                "POST",
                "/api/v1/tasks/batch",
                json={"tasks": tasks},
                headers=idempotency_headers(idempotency_key),
            )
        )

    def get_task(self, task_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/tasks/{task_id}"))

    def list_tasks(self, **filters: Any) -> dict[str, Any]:
        """One page of tasks; filters: status, type (str or list), agent_id,
        created_after, created_before, cursor, limit."""
        return dict(self.request("GET", "/api/v1/tasks", params=filters))

    def iter_tasks(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every task matching the filters, following the cursor."""
        cursor = None
        while True:
            page = self.list_tasks(**filters, cursor=cursor)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def cancel_task(self, task_id: str, reason: str | None = None) -> dict[str, Any]:
        return dict(
            self.request("POST", f"/api/v1/tasks/{task_id}/cancel", params={"reason": reason})
        )

    def retry_task(self, task_id: str) -> dict[str, Any]:
        """Re-drive a FAILED or DEAD task."""
        return dict(self.request("POST", f"/api/v1/tasks/{task_id}/retry"))

    def task_feedback(
        self, task_id: str, score: float, comment: str | None = None
    ) -> dict[str, Any]:
        """Score a finished task's outcome, 0..1."""
        body = clean_params({"score": score, "comment": comment})
        return dict(self.request("POST", f"/api/v1/tasks/{task_id}/feedback", json=body))

    def task_routing(self, task_id: str) -> dict[str, Any]:
        """Why the task went to its agent."""
        return dict(self.request("GET", f"/api/v1/tasks/{task_id}/routing"))

    def wait_task(
        self, task_id: str, timeout: float = 60.0, *, interval: float = 0.5
    ) -> dict[str, Any]:
        """Poll until the task is SUCCEEDED, FAILED, CANCELLED or DEAD and return it;
        raise ``TimeoutError`` (naming the last state seen) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            task = self.get_task(task_id)
            if task["status"] in FINAL_TASK_STATUSES:
                return task
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"task {task_id} still {task['status']} after {timeout}s")
            time.sleep(min(interval, left))

    # events
    def list_events(self, **params: Any) -> dict[str, Any]:
        return dict(self.request("GET", "/api/v1/events", params=params))

    # workspaces (code editor: docs/code-editor.md)
    def create_workspace(self, name: str, **fields: Any) -> dict[str, Any]:
        """Create an empty workspace (``init_git=True``: a git repository), or a clone of
        a local repository (``source="git", git_path=...``)."""
        return dict(self.request("POST", WORKSPACES, json={"name": name, **fields}))

    def get_workspace(self, workspace_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"{WORKSPACES}/{workspace_id}"))

    def list_workspaces(self, **params: Any) -> dict[str, Any]:
        return dict(self.request("GET", WORKSPACES, params=params))

    def workspace_tree(self, workspace_id: str, path: str | None = None) -> dict[str, Any]:
        """Every file (size, sha256), directory and symlink below ``path``."""
        params = {"path": path}
        return dict(self.request("GET", f"{WORKSPACES}/{workspace_id}/tree", params=params))

    def view_file(
        self, workspace_id: str, path: str, *, start: int | None = None, end: int | None = None
    ) -> dict[str, Any]:
        """A file's numbered lines (``start``..``end``, 1-based) and its sha256."""
        params = {"path": path, "start": start, "end": end}
        return dict(self.request("GET", f"{WORKSPACES}/{workspace_id}/view", params=params))

    def editor_command(self, workspace_id: str, command: str, **fields: Any) -> dict[str, Any]:
        """One text-editor command: ``view``, ``create``, ``str_replace``, ``insert``,
        ``undo``, with its fields (``path``, ``old_str``, ``propose``, ...)."""
        body = {"command": command, **fields}
        return dict(self.request("POST", f"{WORKSPACES}/{workspace_id}/editor", json=body))

    def apply_patch(self, workspace_id: str, patch: str, **fields: Any) -> dict[str, Any]:
        """Apply a unified diff, all files or none (``dry_run``, ``propose``, ``fuzz``)."""
        body = {"patch": patch, **fields}
        return dict(self.request("POST", f"{WORKSPACES}/{workspace_id}/patches", json=body))

    def list_edits(self, workspace_id: str, **params: Any) -> dict[str, Any]:
        """Edits, newest first (``status``, ``session_id``, ``cursor``, ``limit``)."""
        return dict(self.request("GET", f"{WORKSPACES}/{workspace_id}/edits", params=params))

    def get_edit(self, workspace_id: str, edit_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"{WORKSPACES}/{workspace_id}/edits/{edit_id}"))

    def approve_edit(
        self, workspace_id: str, edit_id: str, comment: str | None = None
    ) -> dict[str, Any]:
        path = f"{WORKSPACES}/{workspace_id}/edits/{edit_id}/approve"
        return dict(self.request("POST", path, json=review_body(comment)))

    def reject_edit(
        self, workspace_id: str, edit_id: str, comment: str | None = None
    ) -> dict[str, Any]:
        path = f"{WORKSPACES}/{workspace_id}/edits/{edit_id}/reject"
        return dict(self.request("POST", path, json=review_body(comment)))

    def apply_edit(
        self, workspace_id: str, edit_id: str, *, allow_rebase: bool = False, fuzz: int = 0
    ) -> dict[str, Any]:
        """Write an APPROVED edit (``allow_rebase``: even if its files changed since,
        when its diff still applies)."""
        path = f"{WORKSPACES}/{workspace_id}/edits/{edit_id}/apply"
        body = {"allow_rebase": allow_rebase, "fuzz": fuzz}
        return dict(self.request("POST", path, json=body))

    def revert_edit(
        self, workspace_id: str, edit_id: str, title: str | None = None
    ) -> dict[str, Any]:
        """Revert an APPLIED edit; returns the revert (an edit of its own)."""
        path = f"{WORKSPACES}/{workspace_id}/edits/{edit_id}/revert"
        return dict(self.request("POST", path, json={"title": title} if title else {}))

    def list_edit_sessions(self, workspace_id: str, **params: Any) -> dict[str, Any]:
        """Edit sessions, newest first (``task_id``: the session of that task)."""
        return dict(self.request("GET", f"{WORKSPACES}/{workspace_id}/sessions", params=params))

    def session_diff(self, workspace_id: str, session_id: str) -> str:
        """What a session's applied edits changed, as one unified diff."""
        path = f"{WORKSPACES}/{workspace_id}/sessions/{session_id}/diff"
        return handle_text(self._http.get(path, headers=auth_headers(self._token)))

    # chat (docs/chat.md)
    def create_chat_session(
        self, title: str, participants: list[str] | None = None
    ) -> dict[str, Any]:
        """A session with participants: usernames/user ids, or ``agent:NAME``."""
        body = {"title": title, "participants": [participant_ref(p) for p in participants or []]}
        return dict(self.request("POST", CHAT, json=body))

    def list_chat_sessions(self, **params: Any) -> dict[str, Any]:
        return dict(self.request("GET", CHAT, params=params))

    def get_chat_session(self, session_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"{CHAT}/{session_id}"))

    def archive_chat_session(self, session_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"{CHAT}/{session_id}/archive"))

    def add_chat_participant(self, session_id: str, ref: str) -> dict[str, Any]:
        path = f"{CHAT}/{session_id}/participants"
        return dict(self.request("POST", path, json=participant_ref(ref)))

    def remove_chat_participant(self, session_id: str, participant_id: str) -> None:
        self.request("DELETE", f"{CHAT}/{session_id}/participants/{participant_id}")

    def post_chat_message(
        self,
        session_id: str,
        content: str,
        *,
        file_ids: list[str] | None = None,
        to: dict[str, Any] | str | None = None,
    ) -> dict[str, Any]:
        """Post a message; ``to`` (an agent's name, or ``{"agent_type": ...}``...) asks an agent."""
        body = message_body(content, file_ids, to)
        return dict(self.request("POST", f"{CHAT}/{session_id}/messages", json=body))

    def chat_history(self, session_id: str, **params: Any) -> dict[str, Any]:
        """A page of messages (``after_seq``, ``before_seq``, ``cursor``, ``limit``)."""
        return dict(self.request("GET", f"{CHAT}/{session_id}/messages", params=params))

    # files (docs/files.md)
    def upload_file(
        self,
        name: str,
        content: bytes | Iterator[bytes],
        *,
        ttl_seconds: int | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        """Upload bytes (or an iterator of chunks: streamed, never held whole)."""
        params = {"name": name, "ttl_seconds": ttl_seconds, "tag": tags}
        headers = {"Content-Type": "application/octet-stream"}
        return dict(self.request("POST", FILES, params=params, content=content, headers=headers))

    def list_files(self, **params: Any) -> dict[str, Any]:
        return dict(self.request("GET", FILES, params=params))

    def get_file(self, file_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"{FILES}/{file_id}"))

    def download_file(self, file_id: str) -> bytes:
        resp = self._http.get(f"{FILES}/{file_id}/content", headers=auth_headers(self._token))
        if not resp.is_success:
            handle(resp)
        return resp.content

    def delete_file(self, file_id: str) -> None:
        self.request("DELETE", f"{FILES}/{file_id}")

    # workflows (docs/workflows.md)
    def create_workflow(self, definition: dict[str, Any]) -> dict[str, Any]:
        """Store a workflow definition (a name that exists gets its next version)."""
        return dict(self.request("POST", WORKFLOWS, json=definition))

    def validate_workflow(self, definition: dict[str, Any]) -> dict[str, Any]:
        """Check a definition without storing it (``ValidationError`` lists the problems)."""
        return dict(self.request("POST", f"{WORKFLOWS}/validate", json=definition))

    def get_workflow(self, ref: str) -> dict[str, Any]:
        """A workflow version by id, or the latest version of a name."""
        return dict(self.request("GET", f"{WORKFLOWS}/{ref}"))

    def list_workflows(self, **params: Any) -> dict[str, Any]:
        """Definitions, newest first (``name``: its versions; ``cursor``, ``limit``)."""
        return dict(self.request("GET", WORKFLOWS, params=params))

    def run_workflow(self, workflow: str, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start a run of a workflow (a name: its latest version; or an id)."""
        body = {"workflow": workflow, "input": input or {}}
        return dict(self.request("POST", WORKFLOW_RUNS, json=body))

    def get_workflow_run(self, run_id: str) -> dict[str, Any]:
        """A run with every step's state, output and task."""
        return dict(self.request("GET", f"{WORKFLOW_RUNS}/{run_id}"))

    def list_workflow_runs(self, **params: Any) -> dict[str, Any]:
        """Runs, newest first (``status``, ``workflow``, ``cursor``, ``limit``)."""
        return dict(self.request("GET", WORKFLOW_RUNS, params=params))

    def cancel_workflow_run(self, run_id: str, reason: str | None = None) -> dict[str, Any]:
        """Cancel a RUNNING run and its running tasks."""
        path = f"{WORKFLOW_RUNS}/{run_id}/cancel"
        return dict(self.request("POST", path, params={"reason": reason}))

    def retry_workflow_run(self, run_id: str) -> dict[str, Any]:
        """Run a FAILED run again from its failed steps."""
        return dict(self.request("POST", f"{WORKFLOW_RUNS}/{run_id}/retry"))

    def wait_workflow_run(
        self, run_id: str, timeout: float = 300.0, *, interval: float = 0.5
    ) -> dict[str, Any]:
        """Poll until the run is SUCCEEDED, FAILED or CANCELLED and return it; raise
        ``TimeoutError`` (naming the last state seen) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_workflow_run(run_id)
            if run["status"] in FINAL_RUN_STATUSES:
                return run
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"workflow run {run_id} still {run['status']} after {timeout}s")
            time.sleep(min(interval, left))

    # --- routing and learning ------------------------------------------------------------

    def get_routing_policy(self) -> dict[str, Any]:
        """The global routing policy and the per-task-type overrides."""
        return dict(self.request("GET", "/api/v1/routing/policy"))

    def set_routing_policy(
        self,
        strategy: str,
        *,
        task_type: str | None = None,
        mode: str = "PASSIVE",
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Set the global policy (``task_type`` None) or one task type's."""
        body = {"task_type": task_type, "strategy": strategy, "mode": mode, "params": params or {}}
        return dict(self.request("PUT", "/api/v1/routing/policy", json=body))

    def learning_stats(
        self, *, agent_id: str | None = None, task_type: str | None = None
    ) -> dict[str, Any]:
        """What the learning engine knows per (agent, task type), and ejected agents."""
        params = {k: v for k, v in {"agent_id": agent_id, "task_type": task_type}.items() if v}
        return dict(self.request("GET", "/api/v1/learning/stats", params=params))

    def reset_learning(
        self, *, agent_id: str | None = None, task_type: str | None = None
    ) -> dict[str, Any]:
        """Forget what was learned (all, one agent's, one task type's)."""
        params = {k: v for k, v in {"agent_id": agent_id, "task_type": task_type}.items() if v}
        return dict(self.request("POST", "/api/v1/learning/reset", params=params))

    def remove_routing_policy(self, task_type: str) -> None:
        """Remove a task type's policy (it follows the global one again)."""
        self.request("DELETE", f"/api/v1/routing/policy/{task_type}")

    # --- knowledge -------------------------------------------------------------------------

    def add_experience(
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
        return dict(self.request("POST", "/api/v1/knowledge", json=body))

    def get_experience(self, experience_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/knowledge/{experience_id}"))

    def delete_experience(self, experience_id: str) -> None:
        self.request("DELETE", f"/api/v1/knowledge/{experience_id}")

    def search_knowledge(
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
        return dict(self.request("GET", "/api/v1/knowledge", params=params))

    def similar_experiences(
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
        return list(self.request("GET", "/api/v1/knowledge/similar", params=params))

    def knowledge_status(self) -> dict[str, Any]:
        """How the knowledge base ranks (text or hybrid) and why."""
        return dict(self.request("GET", "/api/v1/knowledge/status"))
