"""The states the application's rows move through, as plain string enums: what the pure layers (messages,
domain) read and compare, without the database. invites.db.models stores them as strings."""

from __future__ import annotations

import enum


class EventStatus(enum.StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    CANCELLED = "cancelled"


class Answer(enum.StrEnum):
    ACCEPTED = "accepted"
    DECLINED = "declined"
    TENTATIVE = "tentative"


class AnswerSource(enum.StrEnum):
    WEB = "web"
    CALENDAR = "calendar"
    ORGANISER = "organiser"
    REGISTRATION = "registration"
    # Moved up from the waiting list when a place came free.
    WAITLIST = "waitlist"


class InvitationSource(enum.StrEnum):
    IMPORT = "import"
    REGISTRATION = "registration"
    ORGANISER = "organiser"


class MessageStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    BOUNCED = "bounced"
    # Its campaign was cancelled before it was sent.
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (
            MessageStatus.SENT,
            MessageStatus.FAILED,
            MessageStatus.BOUNCED,
            MessageStatus.CANCELLED,
        )


class CampaignState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"


class HeldKind(enum.StrEnum):
    ANSWER = "answer"
    UNSUBSCRIBE = "unsubscribe"


class HeldState(enum.StrEnum):
    HELD = "held"  # waiting for the organiser, or for the person's next answer
    ACCEPTED = "accepted"  # the organiser judged it a person's: it was recorded
    REJECTED = "rejected"  # the organiser judged it not a person's
    REPLACED = "replaced"  # a later answer of the same person (or a later held one) took its place
