"""Request and response bodies of the code editor API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
)

from ymera.code.status import EditStatus

if TYPE_CHECKING:  # the ORM models (the CLI imports these schemas, not the database layer)
    from ymera.models.code import Edit, EditSession, Workspace

MAX_PATH = 1024
MAX_TEXT = 4 * 1024 * 1024
MAX_PATCH = 8 * 1024 * 1024
MAX_BULK_OPERATIONS = 10_000
# Text stored in the database: PostgreSQL cannot store NUL.
NO_NUL = r"^[^\x00]*$"


def _no_surrogates(value: str) -> str:
    # A lone surrogate (JSON "\ud800") cannot be written in any encoding.
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ValueError("text holds a lone surrogate code point, which cannot be written")
    return value


def _json_integer(value: Any) -> Any:
    # JSON Schema's integer: 5 and 5.0, never "5" or true (which lax ints accept).
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("Input should be an integer")
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]


def _no_surrogates_or_none(value: str | None) -> str | None:
    return None if value is None else _no_surrogates(value)


Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_no_surrogates)]
FilePath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PATH,
        description="Relative to the workspace root (POSIX separators).",
        examples=["src/app.py"],
    ),
    AfterValidator(_no_surrogates),
]
# No pattern: a value that is not a hash never equals the file's, so it is a 409
# conflict like any stale hash (and regex dialects differ on "$").
Sha256 = Annotated[str, Field(max_length=128, description="sha256, lower-case hex.")]


class EditType(StrEnum):
    REFACTOR = "REFACTOR"
    BUG_FIX = "BUG_FIX"
    FEATURE = "FEATURE"
    OPTIMIZATION = "OPTIMIZATION"
    DOCUMENTATION = "DOCUMENTATION"
    TEST = "TEST"
    STYLE = "STYLE"


class EditSource(StrEnum):
    OPERATION = "operation"
    PATCH = "patch"
    BULK = "bulk"
    UNDO = "undo"
    REVERT = "revert"


class Principal(BaseModel):
    type: Literal["user", "agent"]
    id: str
    name: str = ""


# --- workspaces ---------------------------------------------------------------------


class _WorkspaceBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str, Field(pattern=NO_NUL, min_length=1, max_length=200), AfterValidator(_no_surrogates)
    ]
    description: Annotated[
        str, Field(pattern=NO_NUL, max_length=2000), AfterValidator(_no_surrogates)
    ] = ""


class EmptyWorkspaceCreate(_WorkspaceBase):
    source: Literal["empty"] = "empty"
    init_git: StrictBool = Field(
        default=False, description="Make it a git repository (`git init`)."
    )


class GitWorkspaceCreate(_WorkspaceBase):
    source: Literal["git"]
    git_path: Annotated[
        str,
        Field(
            min_length=1,
            max_length=4096,
            pattern=NO_NUL,
            description="Absolute path of a local repository under an allowed root "
            "(`YMERA_CODE__GIT_ALLOWED_ROOTS`). Never a URL.",
        ),
        AfterValidator(_no_surrogates),
    ]
    git_ref: Annotated[
        str | None,
        Field(
            default=None,
            max_length=200,
            pattern=NO_NUL,
            description="Branch or tag to check out (default: the repository's HEAD).",
        ),
    ] = None


def _workspace_source(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("source", "empty")
    return getattr(value, "source", "empty")


WorkspaceCreate = Annotated[
    Annotated[EmptyWorkspaceCreate, Tag("empty")] | Annotated[GitWorkspaceCreate, Tag("git")],
    Discriminator(_workspace_source),
]


class WorkspaceOut(BaseModel):
    id: str
    name: str
    description: str
    source: Literal["empty", "archive", "git"]
    is_git: bool
    git_origin: str | None
    owner_id: str | None
    created_by: str
    edit_count: int = Field(description="Edits recorded so far.")
    created_at: datetime
    updated_at: datetime


class ArchiveWorkspaceOut(BaseModel):
    workspace: WorkspaceOut
    format: Literal["zip", "tar", "tar.gz", "tar.bz2", "tar.xz"]
    files: int
    directories: int
    symlinks: int
    total_bytes: int


class TreeEntryOut(BaseModel):
    path: str
    type: Literal["file", "directory", "symlink"]
    size: int | None = None
    sha256: str | None = None
    target: str | None = Field(default=None, description="A symlink's target, as stored.")


class TreeOut(BaseModel):
    entries: list[TreeEntryOut]
    truncated: bool = Field(description="True when the listing stopped at the entry limit.")


class ViewOut(BaseModel):
    path: str
    kind: Literal["file", "directory"]
    content: str = Field(description='A file: "{n:6}\\t{line}" per line; a directory: a listing.')
    total_lines: int
    sha256: str | None = Field(description="The file's hash, for `expected_hash` later.")
    entries: list[str]


# --- edits ------------------------------------------------------------------------------


class FindingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    path: str
    line: int
    column: int
    severity: Literal["error", "warning", "info"]
    code: str
    message: str
    tool: str


class EditAnalysisOut(BaseModel):
    ran: bool = Field(description="False when the edit was not analysed (see `note`).")
    note: str = ""
    introduced: list[FindingOut] = Field(description="Problems the edit added.")
    fixed: list[FindingOut] = Field(description="Problems the edit removed.")
    skipped: dict[str, str] = Field(default_factory=dict)
    tool_errors: list[str] = Field(default_factory=list)


class EditFileOut(BaseModel):
    path: str
    change: Literal["added", "modified", "deleted"]
    base_hash: str | None = Field(description="sha256 before the edit (null: absent).")
    result_hash: str | None = Field(description="sha256 after the edit (null: deleted).")


class EditOut(BaseModel):
    id: str
    workspace_id: str
    session_id: str | None
    number: int = Field(description="Per-workspace edit number, from 1.")
    type: EditType
    priority: int
    title: str
    description: str
    source: EditSource
    operation: str | None
    status: EditStatus
    author: Principal
    files: list[EditFileOut]
    diff: str | None = Field(description="Unified diff (`git apply` accepts it); lists omit it.")
    analysis: EditAnalysisOut | None
    rebased: bool
    reverts_edit_id: str | None
    reverted_by_edit_id: str | None
    commit_sha: str | None
    applied_at: datetime | None
    applied_by: str | None
    reviewed_at: datetime | None
    reviewed_by: str | None
    review_comment: str
    created_at: datetime
    updated_at: datetime


class EditMeta(BaseModel):
    """What every change records about itself."""

    type: EditType = Field(default=EditType.FEATURE, description="Kind of change.")
    priority: JsonInt = Field(default=5, ge=0, le=9, description="9 is most urgent.")
    title: Annotated[str, Field(pattern=NO_NUL, max_length=200), AfterValidator(_no_surrogates)] = (
        ""
    )
    description: Annotated[
        str, Field(pattern=NO_NUL, max_length=10_000), AfterValidator(_no_surrogates)
    ] = ""
    session_id: str | None = Field(default=None, max_length=36, description="An open session.")
    propose: StrictBool = Field(
        default=False,
        description="Record a PROPOSED edit for review instead of writing the files.",
    )


# --- the text-editor operations ------------------------------------------------------------


class ViewCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: Literal["view"]
    path: Annotated[str, Field(max_length=MAX_PATH), AfterValidator(_no_surrogates)] = Field(
        default="", description='A file or directory ("" = the root).'
    )
    view_range: list[JsonInt] | None = Field(
        default=None, min_length=2, max_length=2, description="[start, end], 1-based; end -1."
    )


class CreateCommand(EditMeta):
    model_config = ConfigDict(extra="forbid")

    command: Literal["create"]
    path: FilePath
    file_text: Text


class StrReplaceCommand(EditMeta):
    model_config = ConfigDict(extra="forbid")

    command: Literal["str_replace"]
    path: FilePath
    old_str: Text
    new_str: Text = ""
    expected_hash: Sha256 | None = None


class InsertCommand(EditMeta):
    model_config = ConfigDict(extra="forbid")

    command: Literal["insert"]
    path: FilePath
    insert_line: JsonInt = Field(
        ge=0, le=100_000_000, description="Insert after this line (0: top)."
    )
    insert_text: Text
    expected_hash: Sha256 | None = None


class UndoCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: Literal["undo"]
    path: FilePath
    session_id: str | None = Field(default=None, max_length=36)


EditorCommand = Annotated[
    ViewCommand | CreateCommand | StrReplaceCommand | InsertCommand | UndoCommand,
    Field(discriminator="command"),
]


class EditorOut(BaseModel):
    command: str
    path: str
    output: str = Field(description="What an agent would read: the view, or what was done.")
    sha256: str | None = Field(default=None, description="The file's hash now.")
    total_lines: int | None = None
    entries: list[str] | None = None
    edit: EditOut | None = Field(default=None, description="The edit recorded (mutations).")


# --- patches and bulk edits ----------------------------------------------------------------


class PatchIn(EditMeta):
    model_config = ConfigDict(extra="forbid")

    patch: Annotated[str, Field(min_length=1, max_length=MAX_PATCH)] = Field(
        description="A unified diff (git-style or plain), one or many files."
    )
    dry_run: StrictBool = Field(default=False, description="Check and report; write nothing.")
    fuzz: JsonInt = Field(
        default=0,
        ge=0,
        le=3,
        description="0: every hunk where it says (strict). N: hunks may move and lose up "
        "to N context lines at each edge.",
    )
    expected_hashes: dict[str, Sha256] | None = Field(
        default=None,
        max_length=10_000,
        description="path -> sha256 the file must have now (409 `conflict` otherwise).",
    )


class FileReportOut(BaseModel):
    path: str
    status: Literal["added", "modified", "deleted", "renamed"]
    added: int
    removed: int
    old_path: str | None = None


class PatchOut(BaseModel):
    dry_run: bool
    files: list[FileReportOut]
    lines_added: int
    lines_removed: int
    edit: EditOut | None = Field(description="The edit recorded (none on a dry run).")


class BulkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: Literal["create"]
    path: FilePath
    file_text: Text


class BulkWrite(BaseModel):
    """Replace a file's whole content (or create it)."""

    model_config = ConfigDict(extra="forbid")

    command: Literal["write"]
    path: FilePath
    file_text: Text


class BulkStrReplace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: Literal["str_replace"]
    path: FilePath
    old_str: Text
    new_str: Text = ""


class BulkInsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: Literal["insert"]
    path: FilePath
    insert_line: JsonInt = Field(ge=0, le=100_000_000)
    insert_text: Text


class BulkDelete(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: Literal["delete"]
    path: FilePath


BulkOperation = Annotated[
    BulkCreate | BulkWrite | BulkStrReplace | BulkInsert | BulkDelete,
    Field(discriminator="command"),
]


class BulkIn(EditMeta):
    model_config = ConfigDict(extra="forbid")

    operations: list[BulkOperation] = Field(
        min_length=1,
        max_length=MAX_BULK_OPERATIONS,
        description="Applied in order, in memory; several may touch one file.",
    )
    dry_run: StrictBool = False
    expected_hashes: dict[str, Sha256] | None = Field(default=None, max_length=10_000)


class BulkOut(BaseModel):
    dry_run: bool
    files: list[EditFileOut]
    edit: EditOut | None


# --- review -----------------------------------------------------------------------------


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: Annotated[
        str, Field(pattern=NO_NUL, max_length=5000), AfterValidator(_no_surrogates)
    ] = ""


class ApplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow_rebase: StrictBool = Field(
        default=False,
        description="If a file changed since the edit was made, apply it anyway when its "
        "diff still applies cleanly to the current version.",
    )
    fuzz: JsonInt = Field(default=0, ge=0, le=3, description="Fuzz for a rebase (see patches).")


class RevertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, Field(pattern=NO_NUL, max_length=200), AfterValidator(_no_surrogates)] = (
        ""
    )


# --- sessions ----------------------------------------------------------------------------


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[
        str, Field(pattern=NO_NUL, min_length=1, max_length=200), AfterValidator(_no_surrogates)
    ]
    description: Annotated[
        str, Field(pattern=NO_NUL, max_length=10_000), AfterValidator(_no_surrogates)
    ] = ""


class SessionOut(BaseModel):
    id: str
    workspace_id: str
    title: str
    description: str
    status: Literal["OPEN", "CLOSED"]
    created_by: Principal
    task_id: str | None = Field(
        default=None, description="The task whose agent's edits this session groups."
    )
    closed_at: datetime | None
    created_at: datetime


# --- git and analysis ----------------------------------------------------------------------


class GitStatusEntryOut(BaseModel):
    path: str
    index: str = Field(description="Porcelain v1 X: ' ', M, A, D, R, C, U or ?.")
    worktree: str = Field(description="Porcelain v1 Y.")
    orig_path: str | None = None


class GitStatusOut(BaseModel):
    branch: str | None
    head: str | None
    clean: bool
    entries: list[GitStatusEntryOut]


class CommitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: Annotated[
        str, Field(pattern=NO_NUL, min_length=1, max_length=20_000), AfterValidator(_no_surrogates)
    ]
    author_name: Annotated[
        str | None,
        Field(
            default=None,
            max_length=200,
            pattern=NO_NUL,
            description="Default: the caller's user name (or agent name). Angle brackets and "
            "control characters are dropped.",
        ),
        AfterValidator(_no_surrogates_or_none),
    ] = None
    author_email: Annotated[
        str | None,
        Field(
            default=None,
            max_length=254,
            pattern=NO_NUL,
            description="Default: `<name>@ymera.local`.",
        ),
        AfterValidator(_no_surrogates_or_none),
    ] = None
    edit_ids: list[Annotated[str, Field(max_length=36)]] | None = Field(
        default=None,
        max_length=10_000,
        description="Commit only the files of these APPLIED edits (default: every change).",
    )


class CommitOut(BaseModel):
    sha: str
    message: str
    author_name: str
    author_email: str
    edit_ids: list[str] = Field(description="The edits this commit now records.")


class AnalysisOut(BaseModel):
    findings: list[FindingOut]
    counts: dict[str, int] = Field(description="Findings per severity.")
    metrics: dict[str, dict[str, Any]] = Field(description="Per file: language, lines, ...")
    skipped: dict[str, str] = Field(description="path -> why it was not analysed.")
    tool_errors: list[str]


# --- rendering ORM rows ----------------------------------------------------------------------


def workspace_out(ws: Workspace) -> WorkspaceOut:
    return WorkspaceOut(
        id=ws.id,
        name=ws.name,
        description=ws.description,
        source=ws.source,
        is_git=ws.is_git,
        git_origin=ws.git_origin,
        owner_id=ws.owner_id,
        created_by=ws.created_by,
        edit_count=ws.edit_count,
        created_at=ws.created_at,
        updated_at=ws.updated_at,
    )


def edit_out(edit: Edit, *, with_diff: bool = True) -> EditOut:
    return EditOut(
        id=edit.id,
        workspace_id=edit.workspace_id,
        session_id=edit.session_id,
        number=edit.number,
        type=edit.type,
        priority=edit.priority,
        title=edit.title,
        description=edit.description,
        source=edit.source,
        operation=edit.operation,
        status=edit.status,
        author=Principal(type=edit.author_type, id=edit.author_id, name=edit.author_name),
        files=[EditFileOut.model_validate(f) for f in edit.files],
        diff=edit.diff if with_diff else None,
        analysis=EditAnalysisOut.model_validate(edit.analysis) if edit.analysis else None,
        rebased=edit.rebased,
        reverts_edit_id=edit.reverts_edit_id,
        reverted_by_edit_id=edit.reverted_by_edit_id,
        commit_sha=edit.commit_sha,
        applied_at=edit.applied_at,
        applied_by=edit.applied_by,
        reviewed_at=edit.reviewed_at,
        reviewed_by=edit.reviewed_by,
        review_comment=edit.review_comment,
        created_at=edit.created_at,
        updated_at=edit.updated_at,
    )


def session_out(es: EditSession) -> SessionOut:
    return SessionOut(
        id=es.id,
        workspace_id=es.workspace_id,
        title=es.title,
        description=es.description,
        status=es.status,
        created_by=Principal(type=es.created_by_type, id=es.created_by_id),
        task_id=es.task_id,
        closed_at=es.closed_at,
        created_at=es.created_at,
    )
