"""`/api/v1/files`: upload, list, inspect, download (with ranges) and delete files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from ymera.auth.dependencies import require
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.errors import PROBLEM_JSON, Unprocessable
from ymera.files import service
from ymera.files.errors import FileTooLarge
from ymera.files.multipart import MULTIPART_OVERHEAD, MultipartFile, boundary_of
from ymera.files.rules import content_disposition
from ymera.files.schemas import Attachment, FileOut
from ymera.files.storage import BlobStorage
from ymera.kit.pagination import Page
from ymera.models.files import File
from ymera.state import DbSession, State

router = APIRouter(prefix="/api/v1/files", tags=["files"])

Read = Annotated[Principal, Depends(require(Permission.FILES_READ))]
Write = Annotated[Principal, Depends(require(Permission.FILES_WRITE))]

# The route accepts bodies up to this; the real limit is the setting
# YMERA_FILES__MAX_UPLOAD_BYTES, enforced while the body streams in.
UPLOAD_CEILING = 1 << 40
MAX_TTL = 10 * 365 * 24 * 3600
Tag = Annotated[str, Query(pattern=r"^[A-Za-z0-9._:-]{1,50}$")]


async def get_storage(state: State) -> BlobStorage:
    """The file bodies' storage (made on first use from `YMERA_FILES__STORAGE_URL`)."""
    return service.storage_of(state)


Storage = Annotated[BlobStorage, Depends(get_storage)]

_BINARY = {"schema": {"type": "string", "format": "binary"}}
CONTENT_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "The whole file.", "content": {"*/*": _BINARY}},
    206: {
        "description": "The requested byte range (see `Content-Range`).",
        "content": {"*/*": _BINARY},
    },
    416: {
        "description": "The range selects no byte (`Content-Range: bytes */<size>`).",
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    },
}


@router.post(
    "",
    response_model=FileOut,
    status_code=201,
    max_body_size=UPLOAD_CEILING,
    openapi_extra={
        "requestBody": {
            "required": False,
            "description": "The file's bytes as is (with `name`), or a multipart/form-data "
            "form whose first part with a filename is the file; none: an empty file.",
            "content": {
                "application/octet-stream": _BINARY,
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
        }
    },
)
async def upload_file(
    request: Request,
    session: DbSession,
    state: State,
    storage: Storage,
    principal: Write,
    name: Annotated[
        str | None,
        Query(
            max_length=1024,
            description="Sanitised to a base name. Required for a raw body; multipart: "
            "defaults to the file part's filename.",
        ),
    ] = None,
    ttl_seconds: Annotated[
        int | None,
        Query(ge=1, le=MAX_TTL, description="Make it temporary: served for this many seconds."),
    ] = None,
    tag: Annotated[list[Tag] | None, Query(max_length=20, description="Tags (repeat).")] = None,
) -> FileOut:
    """Upload a file, streamed to storage: the raw request body (`name` required: 422
    `name_required`), or a `multipart/form-data` body whose first part with a filename
    is the file (parsed while it streams in, never spooled; 400 `invalid_multipart`).

    Over `YMERA_FILES__MAX_UPLOAD_BYTES` (by `Content-Length` or while reading): 413
    `file_too_large` with nothing kept. Per owner, unexpired files may not exceed
    `YMERA_FILES__QUOTA_BYTES` (413 `quota_exceeded`, nothing kept) nor
    `YMERA_FILES__QUOTA_FILES` (429 `too_many_files`). The content type is sniffed from the first
    bytes (the request's `Content-Type` is ignored); the name keeps only its last
    path segment, without control characters, at most 255 characters."""
    length = request.headers.get("content-length")
    declared = int(length) if length and length.isdigit() else None
    limit = state.settings.files.max_upload_bytes
    body: AsyncIterator[bytes] = request.stream()
    boundary = boundary_of(request.headers.get("content-type"))
    if boundary is not None:
        if declared is not None and declared > limit + MULTIPART_OVERHEAD:
            raise FileTooLarge(f"The file is larger than the limit of {limit} bytes", limit=limit)
        form = MultipartFile(body, boundary, limit=limit)
        await form.open()
        name = name or form.filename
        body = form.chunks()
        declared = None  # the body's length is not the file's
    if not name:
        raise Unprocessable(
            "name is required (a query parameter) for a raw upload", code="name_required"
        )
    file = await service.upload(
        session,
        storage=storage,
        principal=principal,
        name=name,
        body=body,
        declared_size=declared,
        limit=limit,
        quota=service.Quota(
            max_bytes=state.settings.files.quota_bytes,
            max_files=state.settings.files.quota_files,
        ),
        ttl_seconds=ttl_seconds,
        tags=tag or [],
        now=state.clock.now(),
    )
    return FileOut.model_validate(file)


@router.get("", response_model=Page[FileOut])
async def list_files(
    session: DbSession,
    state: State,
    principal: Read,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    tag: Tag | None = None,
    owner_id: Annotated[
        str | None,
        Query(max_length=80, description="Admins and operators: only this owner's files."),
    ] = None,
    temporary: Annotated[
        bool | None, Query(description="true: only files with a TTL; false: only permanent ones.")
    ] = None,
    attached_to: Annotated[
        Literal["task", "chat_message", "workspace"] | None,
        Query(description="Only files attached to a resource of this type."),
    ] = None,
) -> Page[FileOut]:
    """List files, newest first, with cursor pagination: the caller's own (admins and
    operators: everyone's, or `owner_id`'s), filtered by `tag`, `temporary` and
    `attached_to`. Expired temporary files are left out."""
    page = await service.list_files(
        session,
        principal=principal,
        cursor=cursor,
        limit=limit,
        now=state.clock.now(),
        owner_id=owner_id,
        tag=tag,
        temporary=temporary,
        attached_type=attached_to,
    )
    return Page[FileOut](items=await _out(session, page.items), next_cursor=page.next_cursor)


async def _out(session: DbSession, files: list[File]) -> list[FileOut]:
    links = await service.attachments(session, [f.id for f in files])
    out = []
    for file in files:
        item = FileOut.model_validate(file)
        item.attached_to = [Attachment(**a) for a in links.get(file.id, [])]
        out.append(item)
    return out


@router.get("/{file_id}", response_model=FileOut)
async def get_file(file_id: str, session: DbSession, state: State, principal: Read) -> FileOut:
    """A file's metadata, with what it is attached to (tasks, chat messages, workspaces)."""
    file = await service.get_file(
        session, principal=principal, file_id=file_id, now=state.clock.now()
    )
    return (await _out(session, [file]))[0]


@router.delete("/{file_id}", status_code=204)
async def delete_file(
    file_id: str,
    session: DbSession,
    state: State,
    storage: Storage,
    principal: Write,
    background: BackgroundTasks,
) -> Response:
    """Delete a file and its body (its owner or an admin)."""
    file = await service.delete_file(
        session, principal=principal, file_id=file_id, now=state.clock.now()
    )
    # Runs after the response, so after the deletion is committed.
    background.add_task(storage.delete, file.storage_key)
    return Response(status_code=204)


@router.get("/{file_id}/content", response_class=StreamingResponse, responses=CONTENT_RESPONSES)
async def download_file(
    file_id: str,
    session: DbSession,
    state: State,
    storage: Storage,
    principal: Read,
    range_header: Annotated[
        str | None,
        Header(alias="Range", max_length=200, description="One range: `bytes=a-b`, `a-`, `-n`."),
    ] = None,
) -> StreamingResponse:
    """Download a file's body, with its stored content type, `ETag` (the sha256) and
    a `Content-Disposition: attachment` naming it (RFC 6266). A single byte range
    answers 206 with `Content-Range`; a range past the end 416; a malformed or
    multiple range is ignored (200, the whole file)."""
    dl = await service.open_content(
        session,
        storage=storage,
        principal=principal,
        file_id=file_id,
        range_header=range_header,
        now=state.clock.now(),
    )
    headers = {
        "Content-Length": str(dl.end - dl.start),
        "ETag": f'"{dl.file.sha256}"',
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(dl.file.name),
    }
    if dl.partial:
        headers["Content-Range"] = f"bytes {dl.start}-{dl.end - 1}/{dl.file.size}"
    return StreamingResponse(
        dl.chunks,
        status_code=206 if dl.partial else 200,
        media_type=dl.file.content_type,
        headers=headers,
    )
