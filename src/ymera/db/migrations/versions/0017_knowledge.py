"""knowledge: experiences and their ranked text index (FTS5 on SQLite, a
generated tsvector with a GIN index on PostgreSQL)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ymera.db.base

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Kept in step with ymera.knowledge.repository (the text it indexes, per dialect).
_SQLITE = [
    "CREATE VIRTUAL TABLE knowledge_fts USING fts5(task_type, summary, notes, "
    "content='knowledge', content_rowid='seq', tokenize='porter unicode61')",
    "CREATE TRIGGER knowledge_fts_ai AFTER INSERT ON knowledge BEGIN "
    "INSERT INTO knowledge_fts(rowid, task_type, summary, notes) "
    "VALUES (new.seq, new.task_type, new.summary, new.notes); END",
    "CREATE TRIGGER knowledge_fts_ad AFTER DELETE ON knowledge BEGIN "
    "INSERT INTO knowledge_fts(knowledge_fts, rowid, task_type, summary, notes) "
    "VALUES ('delete', old.seq, old.task_type, old.summary, old.notes); END",
    "CREATE TRIGGER knowledge_fts_au AFTER UPDATE OF task_type, summary, notes ON knowledge "
    "BEGIN INSERT INTO knowledge_fts(knowledge_fts, rowid, task_type, summary, notes) "
    "VALUES ('delete', old.seq, old.task_type, old.summary, old.notes); "
    "INSERT INTO knowledge_fts(rowid, task_type, summary, notes) "
    "VALUES (new.seq, new.task_type, new.summary, new.notes); END",
]
_POSTGRES = [
    "ALTER TABLE knowledge ADD COLUMN search tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', replace(task_type, '_', ' ')), 'A') || "
    "setweight(to_tsvector('english', summary), 'B') || "
    "setweight(to_tsvector('english', notes), 'B')) STORED",
    "CREATE INDEX ix_knowledge_search ON knowledge USING gin (search)",
]


def upgrade() -> None:
    op.create_table(
        "knowledge",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("task_type", sa.String(length=100), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("agent_id", sa.String(length=36), nullable=True),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_knowledge")),
        sa.UniqueConstraint("id", name=op.f("uq_knowledge_id")),
    )
    op.create_index("ix_knowledge_task_type_seq", "knowledge", ["task_type", "seq"])
    op.create_index("ix_knowledge_task_id", "knowledge", ["task_id"])
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE if dialect == "sqlite" else _POSTGRES:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("knowledge_fts_au", "knowledge_fts_ad", "knowledge_fts_ai"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS knowledge_fts")
    op.drop_table("knowledge")
