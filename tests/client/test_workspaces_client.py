"""The client's workspace methods: create, read, edit, review, revert, diff."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import AppHarness
from tests.fixtures.live import LiveServer
from ymera.auth.permissions import Role
from ymera.client import AsyncClient, Client, ConflictError, PermissionDeniedError, ValidationError


def _client(h: AppHarness, token: str) -> AsyncClient:
    return AsyncClient("http://ymera.test", transport=httpx.ASGITransport(app=h.app), token=token)


async def test_async_client_workspace_round_trip(harness: AppHarness) -> None:
    dev = _client(harness, await harness.token_for(Role.DEVELOPER))
    admin = _client(harness, await harness.token_for(Role.ADMIN))
    async with dev, admin:
        ws = await dev.create_workspace("sdk", description="from the client")
        assert (await dev.get_workspace(ws["id"]))["name"] == "sdk"
        assert [w["id"] for w in (await dev.list_workspaces())["items"]] == [ws["id"]]
        es = await dev.request(
            "POST", f"/api/v1/workspaces/{ws['id']}/sessions", json={"title": "s"}
        )
        made = await dev.editor_command(
            ws["id"], "create", path="a.py", file_text="x = 1\n", session_id=es["id"]
        )
        assert made["edit"]["status"] == "APPLIED"
        assert [e["path"] for e in (await dev.workspace_tree(ws["id"]))["entries"]] == ["a.py"]
        assert (await dev.view_file(ws["id"], "a.py", start=1, end=1))["content"] == "     1\tx = 1"
        with pytest.raises(ValidationError) as missing:
            await dev.editor_command(ws["id"], "str_replace", path="a.py", old_str="nope")
        assert missing.value.code == "not_found"

        patch = "--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
        answer = await dev.apply_patch(ws["id"], patch, propose=True, session_id=es["id"])
        proposed = answer["edit"]
        assert proposed["status"] == "PROPOSED"
        with pytest.raises(PermissionDeniedError) as own:
            await dev.approve_edit(ws["id"], proposed["id"])
        assert own.value.code == "self_approval"
        approved = await admin.approve_edit(ws["id"], proposed["id"], comment="fine")
        assert (approved["status"], approved["review_comment"]) == ("APPROVED", "fine")
        applied = await dev.apply_edit(ws["id"], proposed["id"])
        assert applied["status"] == "APPLIED"
        listed = await dev.list_edits(ws["id"], status=["APPLIED"], session_id=es["id"])
        assert [e["number"] for e in listed["items"]] == [2, 1]
        assert (await dev.get_edit(ws["id"], proposed["id"]))["diff"].endswith("+x = 2\n")
        diff = await dev.session_diff(ws["id"], es["id"])
        assert "+x = 2\n" in diff
        sessions = await dev.list_edit_sessions(ws["id"])
        assert [s["id"] for s in sessions["items"]] == [es["id"]]

        revert = await dev.revert_edit(ws["id"], proposed["id"], title="back")
        assert (revert["title"], revert["reverts_edit_id"]) == ("back", proposed["id"])
        with pytest.raises(ConflictError) as twice:
            await dev.revert_edit(ws["id"], proposed["id"])
        assert twice.value.code == "illegal_edit_transition"
        other = await dev.editor_command(
            ws["id"], "insert", path="a.py", insert_line=0, insert_text="# c", propose=True
        )
        rejected = await admin.reject_edit(ws["id"], other["edit"]["id"], comment="no")
        assert rejected["status"] == "REJECTED"


async def test_sync_client_workspace_methods(live: LiveServer) -> None:
    h = live.harness
    token = await h.token_for(Role.DEVELOPER)

    def scenario() -> dict[str, Any]:
        with Client(live.base_url, token=token, timeout=10) as c:
            ws = c.create_workspace("sync-sdk")
            es = c.request("POST", f"/api/v1/workspaces/{ws['id']}/sessions", json={"title": "s"})
            c.editor_command(ws["id"], "create", path="b.txt", file_text="b\n", session_id=es["id"])
            return {
                "tree": c.workspace_tree(ws["id"]),
                "view": c.view_file(ws["id"], "b.txt"),
                "diff": c.session_diff(ws["id"], es["id"]),
                "edits": c.list_edits(ws["id"]),
            }

    out = await asyncio.to_thread(scenario)
    assert [e["path"] for e in out["tree"]["entries"]] == ["b.txt"]
    assert out["view"]["content"] == "     1\tb"
    assert "+b\n" in out["diff"]
    assert [e["status"] for e in out["edits"]["items"]] == ["APPLIED"]
