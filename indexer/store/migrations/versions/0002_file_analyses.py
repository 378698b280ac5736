"""file analyses: tempo, key and loudness per file (indexer analyze, ingest --analyze)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('file_analyses',
    sa.Column('file_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=True),
    sa.Column('tempo_bpm', sa.Float(), nullable=True),
    sa.Column('tempo_confidence', sa.Float(), nullable=True),
    sa.Column('key', sa.String(length=16), nullable=True),
    sa.Column('key_confidence', sa.Float(), nullable=True),
    sa.Column('loudness_lufs', sa.Float(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('analyzed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['file_id'], ['files.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('file_id')
    )
    with op.batch_alter_table('file_analyses', schema=None) as batch_op:
        batch_op.create_index('ix_file_analyses_key', ['key'], unique=False)
        batch_op.create_index('ix_file_analyses_tempo', ['tempo_bpm'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('file_analyses', schema=None) as batch_op:
        batch_op.drop_index('ix_file_analyses_tempo')
        batch_op.drop_index('ix_file_analyses_key')

    op.drop_table('file_analyses')
