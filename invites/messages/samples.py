"""Made-up recipients and invitations for previews and test sends: plain values that read like the rows a
message is composed from (rendering.Person, compose.Invited), so nothing here touches the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from invites.domain.states import Answer


@dataclass(frozen=True)
class SampleRecipient:
    """A recipient as rendering.Person reads one."""

    email: str
    language: str
    id: int = 0
    first_name: str = ""
    name_prefix: str = ""
    last_name: str = ""
    display_name: str = ""
    salutation: str = ""
    role_key: str | None = None
    role_label: str = ""
    municipality_code: str | None = None
    organisation: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleInvitation:
    """An invitation as compose.Invited reads one."""

    public_id: str = "voorbeeld"
    token_version: int = 1
    answer: Answer | None = None
    waitlist_position: int | None = None


def sample_recipient(email: str = "voorbeeld@example.org", language: str = "nl") -> SampleRecipient:
    """A made-up person for previews and test sends: a mayor with a tussenvoegsel and an accent."""
    return SampleRecipient(
        email=email,
        language=language,
        first_name="Zoë",
        name_prefix="van der",
        last_name="Berg",
        display_name="Zoë van der Berg",
        role_key="mayor",
        municipality_code="GM0353",
    )


def sample_invitation(kind: str = "invitation") -> SampleInvitation:
    """A made-up invitation: accepted for an rsvp-confirmation, third on the list for a waitlist."""
    return SampleInvitation(
        answer=Answer.ACCEPTED if kind == "rsvp-confirmation" else None,
        waitlist_position=3 if kind == "waitlist" else None,
    )
