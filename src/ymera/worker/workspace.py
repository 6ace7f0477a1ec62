"""The workspace of a code task, for its handler: ``ctx.workspace``.

Every call goes to the workspace API with the worker's agent key and names the
task (header ``X-Ymera-Task``), so the server allows it only while the agent holds
the task, records each change as the agent's edit in the task's edit session, and
proposes it for review or writes it at once as the task's ``workspace_mode`` says.
"""

from __future__ import annotations

from typing import Any

import httpx

TASK_HEADER = "X-Ymera-Task"
# Problem fields every error has; the rest are its details.
_PROBLEM_FIELDS = frozenset({"type", "title", "status", "detail", "code", "instance", "request_id"})


class WorkspaceError(Exception):
    """The server refused a workspace call. ``code`` is the problem's stable code
    (``ambiguous``, ``not_found``, ``conflict``, ``workspace_not_assigned``, ...),
    ``message`` its detail and ``details`` the rest (e.g. ``lines`` for
    ``ambiguous``, ``current_hash`` for ``conflict``)."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def _error(response: httpx.Response) -> WorkspaceError:
    try:
        body = response.json()
    except ValueError:
        body = None
    data = body if isinstance(body, dict) else {}
    details = data.get("details")
    if not isinstance(details, dict):
        details = {k: v for k, v in data.items() if k not in _PROBLEM_FIELDS}
    message = str(data.get("detail") or response.text[:500] or f"HTTP {response.status_code}")
    return WorkspaceError(
        response.status_code, str(data.get("code") or "http_error"), message, details
    )


class TaskWorkspace:
    """The workspace a code task carries (``ctx.workspace``; None without one).

    The methods are coroutines, for async handlers. Each returns the API's answer
    as a dict and raises :class:`WorkspaceError` on a refusal. Changes accept the
    edit fields as keywords: ``type`` (FEATURE, BUG_FIX, ...), ``priority``,
    ``title``, ``description``, ``expected_hash``.
    """

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        task_id: str,
        workspace_id: str,
        mode: str,
        timeout: float = 120.0,
    ) -> None:
        self.id = workspace_id
        self.mode = mode
        self.task_id = task_id
        self._url = url
        self._api_key = api_key
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"TaskWorkspace(id={self.id!r}, mode={self.mode!r}, task_id={self.task_id!r})"

    @property
    def proposes(self) -> bool:
        """True when the agent's changes are proposals for review (mode "propose")."""
        return self.mode != "apply"

    async def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self._url,
                headers={"Authorization": f"Bearer {self._api_key}", TASK_HEADER: self.task_id},
                timeout=httpx.Timeout(self._timeout, connect=10.0),
            )
        response = await self._http.request(method, f"/api/v1/workspaces/{self.id}{path}", **kw)
        if not response.is_success:
            raise _error(response)
        return dict(response.json())

    async def _editor(self, command: str, **fields: Any) -> dict[str, Any]:
        return await self._call("POST", "/editor", json={"command": command, **fields})

    async def view(self, path: str = "", view_range: list[int] | None = None) -> dict[str, Any]:
        """A file's numbered lines (``output``), its ``sha256`` and ``total_lines``; or a
        directory two levels deep (``entries``). ``view_range``: ``[start, end]``,
        1-based, ``end`` -1 for the end of the file."""
        fields: dict[str, Any] = {"path": path}
        if view_range is not None:
            fields["view_range"] = list(view_range)
        return await self._editor("view", **fields)

    async def create(self, path: str, text: str, **meta: Any) -> dict[str, Any]:
        """Create a new file (never overwrites: ``exists``)."""
        return await self._editor("create", path=path, file_text=text, **meta)

    async def str_replace(self, path: str, old: str, new: str, **meta: Any) -> dict[str, Any]:
        """Replace the one occurrence of ``old`` (``not_found`` if absent,
        ``ambiguous`` with ``details["lines"]`` if it occurs more than once)."""
        return await self._editor("str_replace", path=path, old_str=old, new_str=new, **meta)

    async def insert(self, path: str, line: int, text: str, **meta: Any) -> dict[str, Any]:
        """Insert ``text`` as whole lines after line ``line`` (0: at the top)."""
        return await self._editor("insert", path=path, insert_line=line, insert_text=text, **meta)

    async def undo(self, path: str) -> dict[str, Any]:
        """Undo the last editor change of ``path`` (in a "propose" task: withdraw the
        agent's last proposal for it)."""
        return await self._editor("undo", path=path)

    async def apply_diff(self, patch: str, dry_run: bool = False, **meta: Any) -> dict[str, Any]:
        """Apply a unified diff, all files or none (``patch_failed`` names the hunk);
        ``dry_run`` only checks it. Also takes ``fuzz`` and ``expected_hashes``."""
        return await self._call(
            "POST", "/patches", json={"patch": patch, "dry_run": dry_run, **meta}
        )

    async def tree(self, path: str = "") -> dict[str, Any]:
        """Every file (size, sha256), directory and symlink below ``path``."""
        return await self._call("GET", "/tree", params={"path": path})

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
