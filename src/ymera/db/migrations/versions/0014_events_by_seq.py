"""events: ``seq`` is the primary key (``id`` and two indexes go)

Events take their ``seq`` as their transaction commits (``events.outbox``), so
every row has one from the start and the separate ``id`` (needed while a relay
numbered events after the fact), the unique index on ``seq`` and the partial
index of unsequenced events are dead weight on every one of the four events a
task writes. On SQLite ``seq`` becomes the rowid itself. Events an older version
left without a ``seq`` are numbered here, after the last one, in id order.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 11:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ymera.db.base

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DATA = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_COLUMNS = "type, resource_type, resource_id, actor, data, created_at"


def _columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("resource_type", sa.String(length=50), nullable=False),
        sa.Column("resource_id", sa.String(length=100), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("data", _DATA, nullable=False),
        sa.Column("created_at", ymera.db.base.UTCDateTime(timezone=True), nullable=False),
    ]


def _swap(new: str, pk: str) -> None:
    """Replace ``events`` by the table ``new``; its primary key is named ``pk``."""
    op.drop_table("events")
    op.rename_table(new, "events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f'ALTER TABLE events RENAME CONSTRAINT "{pk}" TO "pk_events"')
    op.create_index("ix_events_resource", "events", ["resource_type", "resource_id", "seq"])
    op.create_index("ix_events_type_seq", "events", ["type", "seq"])


def upgrade() -> None:
    op.create_table(
        "events_by_seq",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        *_columns(),
        sa.PrimaryKeyConstraint("seq", name="pk_events_by_seq"),
    )
    op.execute(
        f"INSERT INTO events_by_seq (seq, {_COLUMNS}) "  # noqa: S608
        f"SELECT seq, {_COLUMNS} FROM events WHERE seq IS NOT NULL"
    )
    op.execute(
        f"INSERT INTO events_by_seq (seq, {_COLUMNS}) "  # noqa: S608
        "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events) "
        f"+ ROW_NUMBER() OVER (ORDER BY id), {_COLUMNS} FROM events WHERE seq IS NULL"
    )
    op.execute(
        "UPDATE event_sequencer SET last_seq = "
        "(SELECT COALESCE(MAX(seq), 0) FROM events_by_seq) "
        "WHERE last_seq < (SELECT COALESCE(MAX(seq), 0) FROM events_by_seq)"
    )
    _swap("events_by_seq", "pk_events_by_seq")


def downgrade() -> None:
    op.create_table(
        "events_by_id",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        *_columns(),
        sa.PrimaryKeyConstraint("id", name="pk_events_by_id"),
    )
    op.execute(
        f"INSERT INTO events_by_id (id, seq, {_COLUMNS}) "  # noqa: S608
        f"SELECT seq, seq, {_COLUMNS} FROM events"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('events_by_id', 'id'), "
            "(SELECT COALESCE(MAX(id), 0) + 1 FROM events_by_id), false)"
        )
    _swap("events_by_id", "pk_events_by_id")
    op.create_index("ix_events_seq", "events", ["seq"], unique=True)
    where = sa.text("seq IS NULL")
    op.create_index(
        "ix_events_unsequenced", "events", ["id"], postgresql_where=where, sqlite_where=where
    )
