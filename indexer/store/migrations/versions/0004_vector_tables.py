"""vectors in their own tables (file_vectors, segment_vectors), out of the metadata rows

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

``files.vector`` and ``segments.vector`` (2 KB each at 512-d) move to ``file_vectors`` and
``segment_vectors``, keyed by the row's id with ON DELETE CASCADE, so a search hit's metadata
join reads small rows (issue 18 item 5). The vectors are copied by one INSERT ... SELECT per
table inside the migration's transaction, then the old columns are dropped.

SQLite drops the columns with its own ``ALTER TABLE ... DROP COLUMN`` (SQLite >= 3.35), never by
alembic's batch mode: recreating ``files`` would drop the full-text triggers of migration 0003,
and with foreign keys on, dropping the old table would cascade-delete every segment. The space
the vectors took in ``files`` is reused by later writes (``VACUUM`` returns it to the disk).

Downgrade copies the vectors back into the re-added columns and drops the new tables.
"""

import sqlite3

from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# (vector table, its id column, the row table)
TABLES = (("file_vectors", "file_id", "files"), ("segment_vectors", "segment_id", "segments"))


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite' and sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(f"migration 0004 needs SQLite >= 3.35 (ALTER TABLE DROP COLUMN), not {sqlite3.sqlite_version}")
    for table, key, rows in TABLES:
        op.create_table(
            table,
            sa.Column(key, Id, autoincrement=False, nullable=False),
            sa.Column('vector', sa.LargeBinary(), nullable=False),
            sa.ForeignKeyConstraint([key], [f'{rows}.id'], ondelete='CASCADE'),
            sa.PrimaryKeyConstraint(key),
        )
        op.execute(f"INSERT INTO {table} ({key}, vector) SELECT id, vector FROM {rows} WHERE vector IS NOT NULL")
        op.drop_column(rows, 'vector')


def downgrade() -> None:
    for table, key, rows in TABLES:
        op.add_column(rows, sa.Column('vector', sa.LargeBinary(), nullable=True))
        op.execute(f"UPDATE {rows} SET vector = (SELECT v.vector FROM {table} v WHERE v.{key} = {rows}.id)")
        op.drop_table(table)
    # 0001 made segments.vector NOT NULL. Recreating segments (SQLite batch mode) is safe: nothing
    # refers to it any more, and it has no triggers.
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.alter_column('vector', existing_type=sa.LargeBinary(), nullable=False)
