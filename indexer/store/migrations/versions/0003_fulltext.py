"""full-text index over file names, folders and tags (files.words + FTS5 / GIN)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

Adds ``files.words`` (indexer/fulltext.py: the file name, its folders and tag values split into
words), fills it for the rows already there, and builds the index on it: in SQLite an FTS5 table
with external content and triggers that follow every insert, update of ``words`` and delete
(ON DELETE CASCADE included); in PostgreSQL a GIN index on ``to_tsvector('english', words)``.

A later migration that RECREATES the files table in SQLite (alembic batch mode does for some
column changes, never for add_column) drops the triggers with it: it must run ``create_sqlite``
again and rebuild the FTS table.
"""

from alembic import op
import sqlalchemy as sa

from indexer.fulltext import words_for

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

BATCH = 2000

SQLITE_OBJECTS = (
    "CREATE VIRTUAL TABLE files_fts USING fts5(words, content='files', content_rowid='id', "
    "tokenize='porter unicode61')",
    "CREATE TRIGGER files_fts_insert AFTER INSERT ON files BEGIN "
    "INSERT INTO files_fts(rowid, words) VALUES (new.id, coalesce(new.words, '')); END",
    "CREATE TRIGGER files_fts_delete AFTER DELETE ON files BEGIN "
    "INSERT INTO files_fts(files_fts, rowid, words) VALUES ('delete', old.id, coalesce(old.words, '')); END",
    "CREATE TRIGGER files_fts_update AFTER UPDATE OF words ON files BEGIN "
    "INSERT INTO files_fts(files_fts, rowid, words) VALUES ('delete', old.id, coalesce(old.words, '')); "
    "INSERT INTO files_fts(rowid, words) VALUES (new.id, coalesce(new.words, '')); END",
)


def create_sqlite() -> None:
    for statement in SQLITE_OBJECTS:
        op.execute(statement)
    op.execute("INSERT INTO files_fts(files_fts) VALUES ('rebuild')")


def _backfill() -> None:
    """Words for the rows an older release wrote, in pages (bounded memory)."""
    conn = op.get_bind()
    files = sa.table('files', sa.column('id'), sa.column('path'), sa.column('tags', sa.JSON()), sa.column('words'))
    last = 0
    while True:
        rows = conn.execute(
            sa.select(files.c.id, files.c.path, files.c.tags).where(files.c.id > last).order_by(files.c.id).limit(BATCH)
        ).all()
        if not rows:
            return
        for file_id, path, tags in rows:
            conn.execute(files.update().where(files.c.id == file_id).values(words=words_for(path, tags)))
        last = rows[-1][0]


def upgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('words', sa.Text(), nullable=True))
    _backfill()
    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        create_sqlite()
    elif dialect == 'postgresql':
        op.execute(
            "CREATE INDEX ix_files_words_fts ON files USING gin (to_tsvector('english', coalesce(words, '')))"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        for trigger in ("files_fts_insert", "files_fts_delete", "files_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS files_fts")
    elif dialect == 'postgresql':
        op.execute("DROP INDEX IF EXISTS ix_files_words_fts")
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_column('words')
