"""held answers: what a link scanner pressed, or an unauthenticated calendar reply, kept out of the counts

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import invites.db.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "held_answer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invitation_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("answer", "unsubscribe", name="heldkind", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column(
            "answer",
            sa.Enum("accepted", "declined", "tentative", name="answer", native_enum=False, length=20),
            nullable=True,
        ),
        sa.Column("guests", sa.Integer(), nullable=False),
        sa.Column("responses", sa.JSON(), nullable=False),
        sa.Column(
            "source",
            sa.Enum(
                "web",
                "calendar",
                "organiser",
                "registration",
                "waitlist",
                name="answersource",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("at", invites.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "held", "accepted", "rejected", "replaced", name="heldstate", native_enum=False, length=20
            ),
            nullable=False,
        ),
        sa.Column("decided_at", invites.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["event.id"], name=op.f("fk_held_answer_event_id_event"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["invitation_id"],
            ["invitation.id"],
            name=op.f("fk_held_answer_invitation_id_invitation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_held_answer")),
    )
    with op.batch_alter_table("held_answer", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_held_answer_event_id"), ["event_id"], unique=False)
        batch_op.create_index("ix_held_answer_invitation_state", ["invitation_id", "state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("held_answer", schema=None) as batch_op:
        batch_op.drop_index("ix_held_answer_invitation_state")
        batch_op.drop_index(batch_op.f("ix_held_answer_event_id"))

    op.drop_table("held_answer")
