"""Tasks, chat messages and workspaces reference files by id: the ids must name
files the referrer may read (422 `unknown_file`), the files' metadata says what
they are attached to, and the list filters on it."""

from __future__ import annotations

import io
import zipfile

from tests.chat.helpers import new_session, post, user
from tests.code.api_helpers import cheap_passwords, problem  # noqa: F401  (fixture)
from tests.conftest import AppHarness
from ymera.auth.permissions import Role

API = "/api/v1/files"


async def _upload(h: AppHarness, headers: dict[str, str], body: bytes, **params: object) -> str:
    resp = await h.client.post(
        API,
        params={"name": "f.bin", **params},
        content=body,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def test_tasks_reference_readable_files_only(harness: AppHarness) -> None:
    h = harness
    _, alice = await user(h, "alice")
    _, bob = await user(h, "bob")
    mine = await _upload(h, alice, b"alice's")
    theirs = await _upload(h, bob, b"bob's")
    for file_ids in (["nope"], [theirs], [mine, theirs]):
        resp = await h.client.post(
            "/api/v1/tasks", json={"type": "t", "file_ids": file_ids}, headers=alice
        )
        problem(resp, 422, "unknown_file")
    task = await h.client.post(
        "/api/v1/tasks", json={"type": "t", "file_ids": [mine]}, headers=alice
    )
    assert task.status_code == 201, task.text
    meta = (await h.client.get(f"{API}/{mine}", headers=alice)).json()
    assert meta["attached_to"] == [{"type": "task", "id": task.json()["id"]}]
    listed = await h.client.get(API, params={"attached_to": "task"}, headers=alice)
    assert [f["id"] for f in listed.json()["items"]] == [mine]


async def test_chat_participants_read_the_files_of_its_messages(harness: AppHarness) -> None:
    h = harness
    _, alice = await user(h, "alice")
    bob_id, bob = await user(h, "bob")
    _, carol = await user(h, "carol")
    sid = (await new_session(h.client, alice, {"user": bob_id}))["id"]
    file_id = await _upload(h, alice, b"shared in chat")
    assert (await h.client.get(f"{API}/{file_id}", headers=bob)).status_code == 404
    resp = await h.client.post(
        f"/api/v1/chat/sessions/{sid}/messages",
        json={"content": "see attached", "file_ids": [await _upload(h, carol, b"x")]},
        headers=alice,
    )
    problem(resp, 422, "unknown_file")
    message = await post(h.client, alice, sid, "see attached", file_ids=[file_id])
    assert message["file_ids"] == [file_id]
    meta = await h.client.get(f"{API}/{file_id}", headers=bob)
    assert meta.status_code == 200
    assert meta.json()["attached_to"] == [{"type": "chat_message", "id": message["id"]}]
    body = await h.client.get(f"{API}/{file_id}/content", headers=bob)
    assert body.content == b"shared in chat"
    assert (await h.client.get(f"{API}/{file_id}", headers=carol)).status_code == 404
    # Bob may pass it on in the same session: he can read it.
    assert (await post(h.client, bob, sid, "again", file_ids=[file_id]))["seq"] == 2


async def test_a_workspace_from_an_uploaded_archive(harness: AppHarness) -> None:
    h = harness
    headers = await h.headers(Role.DEVELOPER)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("src/app.py", "print('hi')\n")
    file_id = await _upload(h, headers, buf.getvalue())
    resp = await h.client.post(
        "/api/v1/workspaces/archive", params={"name": "w", "file_id": file_id}, headers=headers
    )
    assert resp.status_code == 201, resp.text
    ws_id = resp.json()["workspace"]["id"]
    assert resp.json()["files"] == 1
    meta = (await h.client.get(f"{API}/{file_id}", headers=headers)).json()
    assert meta["attached_to"] == [{"type": "workspace", "id": ws_id}]
    resp = await h.client.post(
        "/api/v1/workspaces/archive", params={"name": "w2", "file_id": "nope"}, headers=headers
    )
    problem(resp, 422, "unknown_file")


async def test_list_filters(harness: AppHarness) -> None:
    h = harness
    headers = await h.headers(Role.DEVELOPER)
    tagged = await _upload(h, headers, b"a", tag="red")
    temporary = await _upload(h, headers, b"b", ttl_seconds=600)

    async def ids(**params: object) -> list[str]:
        resp = await h.client.get(API, params=params, headers=headers)
        assert resp.status_code == 200, resp.text
        return [f["id"] for f in resp.json()["items"]]

    assert await ids(tag="red") == [tagged]
    assert await ids(tag="re") == []
    assert await ids(temporary="true") == [temporary]
    assert await ids(temporary="false") == [tagged]
    admin = await h.headers(Role.ADMIN)
    owner = (await h.client.get(f"{API}/{tagged}", headers=headers)).json()["owner_id"]
    everyone = await h.client.get(API, params={"owner_id": owner}, headers=admin)
    assert {f["id"] for f in everyone.json()["items"]} == {tagged, temporary}
