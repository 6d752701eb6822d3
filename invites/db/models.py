"""The database schema: the source of truth for events, audiences, invitations, answers and the outbox.

Redis only ever carries ids of rows defined here. Every timestamp is stored in UTC and read back aware.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from invites.domain.states import (
    Answer,
    AnswerSource,
    CampaignState,
    EventStatus,
    HeldKind,
    HeldState,
    InvitationSource,
    MessageStatus,
)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC. SQLite keeps no offset, so it is re-attached on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored; attach a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


def _enum(cls: type[enum.Enum]) -> Enum:
    # Stored as plain strings, so adding a member never needs a database type change.
    return Enum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    events: Mapped[list[Event]] = relationship(back_populates="series")


class Event(Base):
    __tablename__ = "event"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    subtitle: Mapped[str] = mapped_column(String(300), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(8), default="nl")
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Amsterdam")
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    walk_in_at: Mapped[datetime | None]
    venue_name: Mapped[str] = mapped_column(String(300), default="")
    venue_address: Mapped[str] = mapped_column(String(300), default="")
    venue_postcode: Mapped[str] = mapped_column(String(20), default="")
    venue_city: Mapped[str] = mapped_column(String(120), default="")
    venue_lat: Mapped[float | None] = mapped_column(Float)
    venue_lon: Mapped[float | None] = mapped_column(Float)
    audience_description: Mapped[str] = mapped_column(Text, default="")
    audience_roles: Mapped[list[Any]] = mapped_column(default=list)
    organiser_name: Mapped[str] = mapped_column(String(300), default="")
    organiser_email: Mapped[str] = mapped_column(String(320), default="")
    partners: Mapped[list[Any]] = mapped_column(default=list)
    capacity: Mapped[int | None]
    price: Mapped[str] = mapped_column(String(60), default="")
    status: Mapped[EventStatus] = mapped_column(_enum(EventStatus), default=EventStatus.PUBLISHED)
    cancel_reason: Mapped[str] = mapped_column(Text, default="")
    ics_uid: Mapped[str] = mapped_column(String(255), unique=True)
    sequence: Mapped[int] = mapped_column(default=0)
    changed_fields: Mapped[list[Any]] = mapped_column(default=list)
    registration_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    registration_opens_at: Mapped[datetime | None]
    registration_closes_at: Mapped[datetime | None]
    rsvp_deadline: Mapped[datetime | None]
    series_id: Mapped[int | None] = mapped_column(ForeignKey("series.id"))
    series_position: Mapped[int | None]
    predecessor_id: Mapped[int | None] = mapped_column(ForeignKey("event.id"))
    # Everything the event file says that has no column yet (questions, extra texts), kept whole.
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    series: Mapped[Series | None] = relationship(back_populates="events")
    predecessor: Mapped[Event | None] = relationship(remote_side=[id])
    programme: Mapped[list[ProgrammeItem]] = relationship(
        back_populates="event", order_by="ProgrammeItem.position", cascade="all, delete-orphan"
    )


class ProgrammeItem(Base):
    __tablename__ = "programme_item"
    __table_args__ = (UniqueConstraint("event_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"))
    position: Mapped[int]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    title: Mapped[str] = mapped_column(String(500))
    speaker: Mapped[str] = mapped_column(String(200), default="")
    organisation: Mapped[str] = mapped_column(String(200), default="")
    event: Mapped[Event] = relationship(back_populates="programme")


class Recipient(Base):
    """A person, identified by the address, whatever event they are invited to."""

    __tablename__ = "recipient"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    # The address folded to lower case: what makes two rows the same person.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    first_name: Mapped[str] = mapped_column(String(120), default="")
    name_prefix: Mapped[str] = mapped_column(String(40), default="")
    last_name: Mapped[str] = mapped_column(String(160), default="")
    display_name: Mapped[str] = mapped_column(String(300), default="")
    salutation: Mapped[str] = mapped_column(String(300), default="")
    role_key: Mapped[str | None] = mapped_column(String(40))
    role_label: Mapped[str] = mapped_column(String(120), default="")
    municipality_code: Mapped[str | None] = mapped_column(String(10))
    organisation: Mapped[str] = mapped_column(String(300), default="")
    language: Mapped[str] = mapped_column(String(8), default="nl")
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    undeliverable: Mapped[bool] = mapped_column(Boolean, default=False)
    # Temporary delivery failures reported afterwards by the receiving side (DSNs with a 4.x.x status).
    soft_bounces: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Invitation(Base):
    __tablename__ = "invitation"
    __table_args__ = (UniqueConstraint("event_id", "recipient_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipient.id", ondelete="CASCADE"), index=True)
    # The public half of the RSVP token; the other half is an HMAC, so nothing secret is stored.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    token_version: Mapped[int] = mapped_column(default=1)
    source: Mapped[InvitationSource] = mapped_column(_enum(InvitationSource), default=InvitationSource.IMPORT)
    answer: Mapped[Answer | None] = mapped_column(_enum(Answer))
    answered_at: Mapped[datetime | None]
    guests: Mapped[int] = mapped_column(default=0)
    responses: Mapped[dict[str, Any]] = mapped_column(default=dict)
    waitlist_position: Mapped[int | None]
    import_job_id: Mapped[int | None] = mapped_column(ForeignKey("import_job.id", ondelete="SET NULL"))
    # A public registration waiting for its double opt-in: no campaign, count or list includes it yet.
    pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Who passed their personal link on, when the organiser lets invitees bring a colleague that way.
    referred_by_id: Mapped[int | None] = mapped_column(ForeignKey("invitation.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]

    event: Mapped[Event] = relationship()
    recipient: Mapped[Recipient] = relationship(foreign_keys=[recipient_id])
    history: Mapped[list[AnswerHistory]] = relationship(
        back_populates="invitation", order_by="AnswerHistory.id", cascade="all, delete-orphan"
    )


class AnswerHistory(Base):
    """Append-only: one row for every answer anybody recorded, from whatever door."""

    __tablename__ = "answer_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    invitation_id: Mapped[int] = mapped_column(ForeignKey("invitation.id", ondelete="CASCADE"), index=True)
    answer: Mapped[Answer] = mapped_column(_enum(Answer))
    at: Mapped[datetime]
    source: Mapped[AnswerSource] = mapped_column(_enum(AnswerSource))
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    invitation: Mapped[Invitation] = relationship(back_populates="history")


class HeldAnswer(Base):
    """An answer (or an unsubscribe) that was not clearly a person's: kept with its evidence, counted nowhere.

    A link scanner's press, or a calendar reply whose sender was not authenticated. The organiser accepts or
    rejects it on the event's overview ("te controleren"); the person's next answer replaces it.
    """

    __tablename__ = "held_answer"
    __table_args__ = (Index("ix_held_answer_invitation_state", "invitation_id", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    invitation_id: Mapped[int] = mapped_column(ForeignKey("invitation.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    kind: Mapped[HeldKind] = mapped_column(_enum(HeldKind), default=HeldKind.ANSWER)
    answer: Mapped[Answer | None] = mapped_column(_enum(Answer))
    guests: Mapped[int] = mapped_column(default=0)
    responses: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[AnswerSource] = mapped_column(_enum(AnswerSource))
    at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[HeldState] = mapped_column(_enum(HeldState), default=HeldState.HELD)
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str] = mapped_column(String(320), default="")


class PageView(Base):
    """A GET of an RSVP page: an open, possibly by a link scanner."""

    __tablename__ = "page_view"

    id: Mapped[int] = mapped_column(primary_key=True)
    invitation_id: Mapped[int] = mapped_column(ForeignKey("invitation.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    likely_scanner: Mapped[bool] = mapped_column(Boolean, default=False)


class Campaign(Base):
    """A send an organiser started: one kind of message to a segment of an event's audience."""

    __tablename__ = "campaign"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    sequence: Mapped[int] = mapped_column(default=0)
    segment: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[CampaignState] = mapped_column(_enum(CampaignState), default=CampaignState.RUNNING)
    total: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class OutboundMessage(Base):
    """The outbox: a row exists, committed, before any worker hears of it."""

    __tablename__ = "outbound_message"
    __table_args__ = (
        Index("ix_outbound_message_status_next", "status", "next_attempt_at"),
        Index("ix_outbound_message_message_id", "message_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # (kind, event, recipient, sequence), or (reminder rule, invitation): no message is ever made twice.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipient.id", ondelete="CASCADE"), index=True)
    invitation_id: Mapped[int | None] = mapped_column(ForeignKey("invitation.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaign.id", ondelete="SET NULL"), index=True
    )
    reminder_rule_id: Mapped[int | None] = mapped_column(ForeignKey("reminder_rule.id", ondelete="SET NULL"))
    sequence: Mapped[int] = mapped_column(default=0)
    language: Mapped[str] = mapped_column(String(8), default="nl")
    to_address: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[MessageStatus] = mapped_column(_enum(MessageStatus), default=MessageStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    last_reply: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    soft_bounces: Mapped[int] = mapped_column(default=0, server_default="0")


class ReminderRule(Base):
    __tablename__ = "reminder_rule"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    # Either an offset from the start ("-7d", "-1d 10:00") or an absolute local time.
    offset: Mapped[str] = mapped_column(String(40), default="")
    at: Mapped[datetime | None]
    audience: Mapped[str] = mapped_column(String(40))
    segment: Mapped[dict[str, Any]] = mapped_column(default=dict)
    template: Mapped[str] = mapped_column(String(40), default="reminder")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    # Why the last sweep could not use the rule ("" when it could), and when: the reminders page shows it.
    last_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    last_error_at: Mapped[datetime | None]


class Suppression(Base):
    """An address that must never be mailed again: it unsubscribed, bounced hard, or was erased."""

    __tablename__ = "suppression"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime]


class ImportJob(Base):
    __tablename__ = "import_job"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20), default="done")
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class AuditLog(Base):
    """Append-only: who exported or erased a person's data, and when the retention purge ran.

    The person is named by their erasure key (a keyed hash of the address), never by the address.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    action: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(120), default="")
    subject_key: Mapped[str] = mapped_column(String(120), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class PrivacyKey(Base):
    """One row: the random key, made by the migration, that turns an erased address into its suppression
    key, so the address itself is not kept and the key cannot be recomputed from the address alone."""

    __tablename__ = "privacy_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(128))


class Organiser(Base):
    """Someone who may sign in to the organiser pages and the JSON API. The password is an argon2 hash."""

    __tablename__ = "organiser"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="organiser", cascade="all, delete-orphan")
    sessions: Mapped[list[OrganiserSession]] = relationship(
        back_populates="organiser", cascade="all, delete-orphan"
    )


class OrganiserSession(Base):
    """A signed-in browser. The cookie carries a random id; only its SHA-256 is stored. Signing out, a
    password change or a removed account ends the row, and with it the cookie, wherever it is."""

    __tablename__ = "organiser_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    organiser_id: Mapped[int] = mapped_column(ForeignKey("organiser.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    user_agent: Mapped[str] = mapped_column(String(300), default="")

    organiser: Mapped[Organiser] = relationship(back_populates="sessions")


class ApiToken(Base):
    """A bearer token for the JSON API. Only its SHA-256 is stored: the token is shown once, when made."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    organiser_id: Mapped[int] = mapped_column(ForeignKey("organiser.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    organiser: Mapped[Organiser] = relationship(back_populates="tokens")
