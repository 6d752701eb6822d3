"""How many invitations are composed per second on one core: the fast path against the naive way.

The naive way is what a first version does for every recipient: render the templates, inline the CSS,
build a new icalendar.Calendar, and let EmailMessage with policy.SMTP write the MIME. Both run in this
process, on the example event in an in-memory SQLite database and on synthetic recipients. Run it with
`python -m bench.compose [--recipients N] [--runs N]`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from invites import db
from invites.db.models import Base, Event, Invitation, Recipient
from invites.domain.eventfile import parse_event_file
from invites.domain.reference import load_municipalities, roles
from invites.domain.tokens import new_public_id
from invites.messages.compose import Composer
from invites.messages.rendering import TemplateSet
from invites.services.events import load_event
from invites.settings import project_dir

NOW = datetime(2018, 1, 15, 9, 0, tzinfo=UTC)
SENDER = "VNG afdeling Utrecht <uitnodigingen@example.org>"
FIRST = ["Zoë", "Jan", "Anouk", "Mehmet", "Ingrid", "Pieter", "Fatima", "Kees", "Noor", "Bram"]
PREFIX = ["", "van", "de", "van der", "", "", "ten", ""]
LAST = ["Ĳsbrandt", "Berg", "Jansen", "Yılmaz", "Visser", "Bakker", "El Amrani", "Smit", "Coöperatie"]


def example_event() -> Event:
    engine = db.make_engine("sqlite://")
    Base.metadata.create_all(engine)
    session = db.session_factory(engine)()
    source = project_dir("examples") / "lokaal-samenspel-2018.toml"
    return load_event(session, parse_event_file(source.read_bytes(), str(source)), NOW).event


def audience(count: int) -> list[tuple[Recipient, Invitation]]:
    role_keys = sorted(roles())
    codes = sorted(m.code for m in load_municipalities().values())
    people = []
    for index in range(count):
        first, prefix = FIRST[index % len(FIRST)], PREFIX[index % len(PREFIX)]
        last = LAST[index % len(LAST)]
        named = index % 5 != 0  # one in five is known only by address and role
        address = f"persoon{index}@example.org"
        recipient = Recipient(
            id=index + 1,
            email=address,
            email_key=address,
            first_name=first if named else "",
            name_prefix=prefix if named else "",
            last_name=last if named else "",
            display_name=" ".join(p for p in (first, prefix, last) if p) if named else "",
            salutation="",
            role_key=role_keys[index % len(role_keys)],
            role_label="",
            municipality_code=codes[index % len(codes)],
            organisation="",
            language="en" if index % 7 == 0 else "nl",
            attributes={},
            tags=[],
        )
        people.append((recipient, Invitation(id=index + 1, public_id=new_public_id(), token_version=1)))
    return people


def naive(composer: Composer, recipient: Recipient, invitation: Invitation) -> bytes:
    """The plain way: every template rendered, a new Calendar, and EmailMessage writing the MIME."""
    parts = composer.reference(recipient, invitation)
    message = EmailMessage(policy=SMTP)
    message["From"] = composer.sender
    message["To"] = Address(display_name=recipient.display_name, addr_spec=recipient.email)
    message["Subject"] = parts.subject
    message["Date"] = format_datetime(composer.now)
    message["Message-ID"] = composer.message_id(recipient)
    message["Auto-Submitted"] = "auto-generated"
    https, mailto = composer.unsubscribe_links(invitation)
    message["List-Unsubscribe"] = f"<{https}>, <{mailto}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(parts.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(parts.html, subtype="html", charset="utf-8", cte="quoted-printable")
    if parts.ics is not None and parts.method is not None:
        message.add_alternative(
            parts.ics.decode(),
            subtype="calendar",
            charset="utf-8",
            cte="base64",
            params={"method": parts.method},
        )
        message.add_attachment(parts.ics, maintype="application", subtype="ics", filename="invite.ics")
    message["Content-Language"] = recipient.language
    return message.as_bytes()


def rate(run: Callable[[], int], runs: int) -> float:
    """The median of `runs` timings, as messages per second."""
    figures = []
    for _ in range(runs):
        started = time.perf_counter()
        count = run()
        figures.append(count / (time.perf_counter() - started))
    return statistics.median(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--naive-recipients", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    event = example_event()
    templates = TemplateSet()
    people = audience(args.recipients)

    def composer() -> Composer:
        # A new composer per run: building the per-campaign parts is part of the cost.
        return Composer(
            event,
            "invitation",
            templates,
            sender=SENDER,
            base_url="https://invites.example.org",
            secret="bench-secret",
            now=NOW,
        )

    def fast_run() -> int:
        fast = composer()
        size = sum(len(fast.compose(r, i).data) for r, i in people)
        return len(people) if size else 0

    def naive_run() -> int:
        plain = composer()
        chosen = people[: args.naive_recipients]
        size = sum(len(naive(plain, r, i)) for r, i in chosen)
        return len(chosen) if size else 0

    fast_rate = rate(fast_run, args.runs)
    naive_rate = rate(naive_run, max(3, args.runs // 2))
    print(f"example invitation, {args.recipients} synthetic recipients, one core, median of {args.runs} runs")
    print(f"fast:  {fast_rate:8.0f} composed/s per core")
    print(f"naive: {naive_rate:8.0f} composed/s per core (EmailMessage + a new icalendar.Calendar each)")
    print(f"ratio: {fast_rate / naive_rate:8.1f}x")


if __name__ == "__main__":
    main()
