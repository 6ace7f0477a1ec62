"""code tasks: a task may carry a workspace; edit sessions may belong to a task

``tasks.workspace_id`` (the workspace the task's agent may edit; set to NULL when
the workspace is deleted) and ``tasks.workspace_mode`` ("apply" or "propose");
``edit_sessions.task_id`` (the task whose agent's edits the session groups, one
session per task). Agent keys gain ``workspaces:read`` and ``workspaces:write``
(usable only on the workspace of a task the agent holds).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 05:00:00.000000
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import ymera.db.base

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AGENT_KEY_SCOPES = ("workspaces:read", "workspaces:write")

_api_keys = sa.table(
    "api_keys",
    sa.column("id", sa.String(36)),
    sa.column("kind", sa.String(10)),
    sa.column("scopes", ymera.db.base.JSONType),
)


def _rescope(change: Any) -> None:
    """Rewrite every agent key's scopes with ``change(scopes) -> scopes``."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_api_keys.c.id, _api_keys.c.scopes).where(_api_keys.c.kind == "agent")
    ).all()
    for key_id, scopes in rows:
        new = change(list(scopes or []))
        if new != list(scopes or []):
            bind.execute(sa.update(_api_keys).where(_api_keys.c.id == key_id).values(scopes=new))


def upgrade() -> None:
    with op.batch_alter_table("edit_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("task_id", sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f("ix_edit_sessions_task_id"), ["task_id"], unique=True)

    # On SQLite, adding the foreign key copies the tasks table (batch mode).
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("workspace_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("workspace_mode", sa.String(length=10), nullable=True))
        batch_op.create_index(batch_op.f("ix_tasks_workspace_id"), ["workspace_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_tasks_workspace_id_workspaces"),
            "workspaces",
            ["workspace_id"],
            ["id"],
            ondelete="SET NULL",
        )

    _rescope(lambda scopes: sorted(set(scopes) | set(AGENT_KEY_SCOPES)))


def downgrade() -> None:
    _rescope(lambda scopes: sorted(set(scopes) - set(AGENT_KEY_SCOPES)))

    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_tasks_workspace_id_workspaces"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_tasks_workspace_id"))
        batch_op.drop_column("workspace_mode")
        batch_op.drop_column("workspace_id")

    with op.batch_alter_table("edit_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_edit_sessions_task_id"))
        batch_op.drop_column("task_id")
