"""The knowledge base, for a handler: ``ctx.knowledge``.

Calls go to ``/api/v1/knowledge`` with the worker's agent key, so what an agent
adds is recorded as its own. The methods are coroutines; refusals raise
:class:`KnowledgeError`.
"""

from __future__ import annotations

from typing import Any

import httpx


class KnowledgeError(Exception):
    """The server refused a knowledge call (``status``, ``code``, ``message``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class TaskKnowledge:
    """Experiences to read before working (``similar``, ``search``) and to leave
    behind (``add``). Defaults come from the running task (its id and type)."""

    def __init__(
        self, *, url: str, api_key: str, task_id: str, task_type: str, timeout: float = 30.0
    ) -> None:
        self.task_id = task_id
        self.task_type = task_type
        self._url = url
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"TaskKnowledge(task_id={self.task_id!r}, task_type={self.task_type!r})"

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        async with httpx.AsyncClient(
            base_url=self._url, headers=self._headers, timeout=self._timeout
        ) as http:
            resp = await http.request(method, f"/api/v1/knowledge{path}", **kw)
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {}
            data = body if isinstance(body, dict) else {}
            raise KnowledgeError(
                resp.status_code,
                str(data.get("code") or "http_error"),
                str(data.get("detail") or resp.text[:500]),
            )
        return resp.json() if resp.content else None

    async def add(
        self,
        summary: str,
        *,
        notes: str = "",
        outcome: str | None = None,
        task_type: str | None = None,
        task_id: str | None = None,
    ) -> dict[str, Any]:
        """Record an experience (of this task and its type unless told otherwise)."""
        body = {
            "task_type": task_type or self.task_type,
            "summary": summary,
            "notes": notes,
            "outcome": outcome,
            "task_id": task_id or self.task_id,
        }
        return dict(await self._call("POST", "", json=body))

    async def search(
        self,
        q: str,
        *,
        task_type: str | None = None,
        outcome: str | None = None,
        agent_id: str | None = None,
        limit: int = 10,
    ) -> list[dict[str, Any]]:
        """Experiences matching ``q`` (web-search syntax), most relevant first."""
        params = {"q": q, "type": task_type, "outcome": outcome, "agent_id": agent_id}
        params = {k: v for k, v in params.items() if v is not None}
        page = await self._call("GET", "", params={**params, "limit": limit})
        return list(page["items"])

    async def similar(
        self,
        text: str | None = None,
        *,
        task_type: str | None = None,
        outcome: str | None = None,
        limit: int = 5,
    ) -> list[dict[str, Any]]:
        """Past experiences like this task (or like ``text``), most similar first."""
        params: dict[str, Any] = {"limit": limit}
        if text is None:
            params["task_id"] = self.task_id
        else:
            params["text"] = text
        if task_type is not None:
            params["type"] = task_type
        if outcome is not None:
            params["outcome"] = outcome
        return list(await self._call("GET", "/similar", params=params))
