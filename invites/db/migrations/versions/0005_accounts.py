"""accounts: organisers who sign in, and their API tokens

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import invites.db.models

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "organiser",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", invites.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", invites.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organiser")),
        sa.UniqueConstraint("email", name=op.f("uq_organiser_email")),
    )
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organiser_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", invites.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", invites.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", invites.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organiser_id"],
            ["organiser.id"],
            name=op.f("fk_api_token_organiser_id_organiser"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("digest", name=op.f("uq_api_token_digest")),
    )
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_token_organiser_id"), ["organiser_id"], unique=False)
    op.create_table(
        "organiser_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organiser_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", invites.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", invites.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["organiser_id"],
            ["organiser.id"],
            name=op.f("fk_organiser_session_organiser_id_organiser"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organiser_session")),
        sa.UniqueConstraint("digest", name=op.f("uq_organiser_session_digest")),
    )
    with op.batch_alter_table("organiser_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_organiser_session_organiser_id"), ["organiser_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("organiser_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_organiser_session_organiser_id"))
    op.drop_table("organiser_session")
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_token_organiser_id"))
    op.drop_table("api_token")
    op.drop_table("organiser")
