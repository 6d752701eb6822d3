"""Composing the exact bytes of one message: MIME per CalConnect's iMIP practice, with the calendar part.

A `Composer` is built once per (event, kind) and holds everything that does not change per recipient: the
compiled templates and their skeletons, the calendar serialised once, the fixed headers already encoded.
`compose` adds the person and writes the MIME bytes itself:

    multipart/mixed
      multipart/alternative
        text/plain                          quoted-printable
        text/html                           quoted-printable, CSS inlined
        text/calendar; method=REQUEST       base64, the METHOD inside matches
      application/ics  invite.ics           base64, the same calendar

Kinds without a calendar (registration-confirmation, waitlist, a declined rsvp-confirmation with nothing to
remove) are a multipart/alternative of text and HTML alone. `reference` renders the same content the plain
way; the tests hold the two together.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import dkim  # type: ignore[import-untyped]

from invites.domain.errors import InputError
from invites.domain.reference import LANGUAGES, Municipalities, load_municipalities
from invites.domain.states import Answer, EventStatus
from invites.domain.tokens import make_token, unsubscribe_token
from invites.messages.ics import CalendarEvent, CalendarTemplate
from invites.messages.rendering import (
    Filled,
    MessageRenderer,
    Person,
    RenderedText,
    Skeleton,
    TemplateSet,
    calendar_links,
    event_context,
    event_overrides,
    programme_text,
    recipient_context,
)
from invites.settings import Settings

if TYPE_CHECKING:
    from invites.db.models import Event

# The iTIP method of each kind's calendar part; rsvp-confirmation depends on the answer (see `method_for`).
CALENDAR_METHOD: dict[str, str | None] = {
    "invitation": "REQUEST",
    "update": "REQUEST",
    "reminder": "REQUEST",
    "cancellation": "CANCEL",
    "registration-confirmation": None,
    "waitlist": None,
}
AUTO: Final = "auto"
# What DKIM signs: the headers a forwarder or list must not change.
DKIM_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"MIME-Version",
    b"Content-Type",
    b"Auto-Submitted",
)


class CancelledEvent(InputError):
    """A message whose calendar part would put a cancelled event back in calendars: a REQUEST after the
    CANCEL, with the cancellation's SEQUENCE, is taken as the newest version of the meeting."""

    def __init__(self, slug: str, kind: str) -> None:
        self.slug = slug
        self.kind = kind
        super().__init__(
            f"event {slug!r} is cancelled: its {kind} would carry a calendar REQUEST, which puts the meeting "
            "back in every calendar that gets it; only the cancellation can be sent (kind cancellation)"
        )


@dataclass(frozen=True)
class Composed:
    to: str
    message_id: str
    subject: str
    data: bytes


@dataclass(frozen=True)
class Parts:
    """What a message says, before MIME: the finished texts and the calendar, if any."""

    subject: str
    text: str
    html: str
    ics: bytes | None
    method: str | None


def sender_domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    if "@" not in address:
        raise InputError(f"INVITES_FROM {sender!r} holds no e-mail address")
    return address.rsplit("@", 1)[1]


def message_id(secret: str, domain: str, kind: str, event_id: int, recipient_id: int, sequence: int) -> str:
    """The same Message-ID every time for (event, recipient, kind, sequence): a resend can be collapsed."""
    key = f"{kind}.{event_id}.{recipient_id}.{sequence}"
    tag = hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()[:12]
    return f"<{key}.{tag}@{domain}>"


def default_unsubscribe_mailto(sender: str) -> str:
    """`uitnodigingen+unsubscribe@example.org` for a From of `uitnodigingen@example.org`."""
    local, _, domain = parseaddr(sender)[1].rpartition("@")
    return f"{local}+unsubscribe@{domain}"


def _single_line(value: str, what: str) -> str:
    if "\r" in value or "\n" in value:
        raise InputError(f"{what} holds a line break, which could forge a header: {value!r}")
    return value


# --- Headers ----------------------------------------------------------------------------------------------

_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?: [A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*")
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"\\]+@[^\s<>()\[\],;:\"\\@]+")
# RFC 2047 section 5 (3): what may stand for itself in an encoded-word inside a phrase.
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_BYTES = {b: chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in range(256)}
_WORD_ROOM = 62  # payload per encoded-word: "To: =?utf-8?q?" + 62 + "?=" stays within 78 characters


def encode_words(text: str) -> list[str]:
    """Text as RFC 2047 Q encoded-words of whole characters, each short enough for a folded line.

    A decoder joins adjacent encoded-words without the folding space between them (RFC 2047 section 6.2),
    so the spaces of `text` travel inside the words, as "_"."""
    words: list[str] = []
    current = ""
    for char in text:
        piece = "".join(_Q_BYTES[b] for b in char.encode("utf-8"))
        if len(current) + len(piece) > _WORD_ROOM:
            words.append(f"=?utf-8?q?{current}?=")
            current = ""
        current += piece
    words.append(f"=?utf-8?q?{current}?=")
    return words


def _phrase_words(name: str) -> list[str]:
    """The display name as the words of an RFC 5322 phrase, to be joined by single spaces."""
    if name.isascii() and name.isprintable() and "=?" not in name:
        if _ATOMS.fullmatch(name):
            return name.split(" ")
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}"'.split(" ")
    # Plain atoms stay readable; every run of other words becomes encoded-words, its spaces inside them.
    words: list[str] = []
    run: list[str] = []
    for token in name.split(" "):
        if _ATOMS.fullmatch(token) and "=?" not in token:
            if run:
                words.extend(encode_words(" ".join(run)))
                run = []
            words.append(token)
        else:
            run.append(token)
    if run:
        words.extend(encode_words(" ".join(run)))
    return words


def address_header(field: str, name: str, address: str) -> bytes:
    """`To: Name <address>` as ASCII folded at spaces: atoms, a quoted string, or encoded-words (Zoë).

    Whitespace in the name is folded to single spaces; a line break in name or address is refused."""
    _single_line(name, "the recipient's name")
    _single_line(address, "the recipient's address")
    if not _ADDRESS.fullmatch(address) or not address.isascii():
        raise InputError(f"the recipient's address {address!r} cannot be written into a header")
    name = " ".join(name.split())
    words = [*_phrase_words(name), f"<{address}>"] if name else [address]
    lines = [f"{field}:"]
    for word in words:
        if len(lines[-1]) + 1 + len(word) > 78 and lines[-1] != f"{field}:":
            lines.append(" " + word)
        else:
            lines[-1] += " " + word
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def folded(field: str, value: str) -> bytes:
    """One header, folded and RFC 2047 encoded by the standard library (used once per distinct value)."""
    line: str = SMTP.fold(field, _single_line(value, f"the {field} header"))
    return line.encode("ascii")


def list_unsubscribe(https: str, mailto: str) -> bytes:
    # One URI per line, each unbroken (RFC 2369): such a line may pass 78 characters, never 998.
    return f"List-Unsubscribe: <{https}>,\r\n <{mailto}>\r\n".encode("ascii")


# --- Bodies -----------------------------------------------------------------------------------------------


def quoted_printable(text: str) -> bytes:
    """UTF-8 text with LF line ends as quoted-printable with CRLF line ends, lines of at most 76."""
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


def _qp_piece(text: str) -> bytes:
    # A piece of a longer body, encoded on its own: a soft line break ("=" CRLF) closes it unless it ends
    # a line anyway, so that pieces encoded apart join into valid quoted-printable of the whole.
    if not text:
        return b""
    if text.isascii() and text.isprintable():
        # A value within one line: only "=" needs encoding, so skip the general encoder.
        short = text.replace("=", "=3D")
        if len(short) <= 75:
            return short.encode("ascii") + b"=\r\n"
    encoded = quoted_printable(text)
    return encoded if encoded.endswith(b"\n") else encoded + b"=\r\n"


class QuotedPrintableSkeleton:
    """A skeleton's fixed chunks, quoted-printable encoded once; `encode` adds one person's values."""

    def __init__(self, skeleton: Skeleton) -> None:
        self.chunks = [_qp_piece(chunk) for chunk in skeleton.chunks]
        self.holes = list(zip(skeleton.slots, skeleton.escapes, strict=True))

    def encode(self, values: list[str]) -> bytes:
        chunks = self.chunks
        out = [chunks[0]]
        for position, (slot, escape) in enumerate(self.holes, 1):
            out.append(_qp_piece(escape(values[slot])))
            out.append(chunks[position])
        return b"".join(out)


def base64_lines(data: bytes) -> bytes:
    encoded = binascii.b2a_base64(data, newline=False)
    return b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))


@dataclass(frozen=True)
class DkimKey:
    """A DKIM signing key: the selector, the domain whose DNS holds the public key, the private key PEM."""

    selector: str
    domain: str
    private_key: bytes

    @classmethod
    def load(cls, path: Path, selector: str, domain: str) -> DkimKey:
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise InputError(f"INVITES_DKIM_KEY_FILE {path}: {exc.strerror or exc}") from exc
        try:
            dkim.crypto.parse_pem_private_key(pem)
        except Exception as exc:  # dkimpy raises its own or ASN.1 errors for a bad key
            raise InputError(f"INVITES_DKIM_KEY_FILE {path}: not an RSA private key in PEM ({exc})") from exc
        if not selector:
            raise InputError("INVITES_DKIM_SELECTOR is required with INVITES_DKIM_KEY_FILE")
        return cls(selector, domain, pem)

    def sign(self, data: bytes) -> bytes:
        """`data` with a DKIM-Signature header in front (relaxed/simple, rsa-sha256)."""
        signature = dkim.sign(
            data,
            self.selector.encode(),
            self.domain.encode(),
            self.private_key,
            include_headers=list(DKIM_HEADERS),
        )
        return bytes(signature) + data


def dkim_key(settings: Settings) -> DkimKey | None:
    """The configured DKIM key, or None when INVITES_DKIM_KEY_FILE is not set."""
    if not settings.dkim_key_file:
        return None
    return DkimKey.load(settings.dkim_key_file, settings.dkim_selector, sender_domain(settings.sender))


def composer_for(
    settings: Settings, event: Event, kind: str, templates: TemplateSet, now: datetime, **options: Any
) -> Composer:
    """A Composer with everything the settings say: sender, links, DKIM, the unsubscribe address."""
    return Composer(
        event,
        kind,
        templates,
        sender=settings.sender,
        base_url=settings.base_url,
        secret=settings.secret_key,
        now=now,
        dkim=dkim_key(settings),
        unsubscribe_mailto=settings.unsubscribe_mailto or None,
        places=load_municipalities(settings.municipalities_file),
        **options,
    )


# --- The composer -----------------------------------------------------------------------------------------


class Invited(Protocol):
    """What a message reads of the invitation: an Invitation, or the plain row a delivery batch loads."""

    @property
    def public_id(self) -> str: ...
    @property
    def token_version(self) -> int: ...
    @property
    def answer(self) -> Answer | None: ...
    @property
    def waitlist_position(self) -> int | None: ...


class Composer:
    def __init__(
        self,
        event: Event,
        kind: str,
        templates: TemplateSet,
        *,
        sender: str,
        base_url: str,
        secret: str,
        now: datetime,
        dkim: DkimKey | None = None,
        unsubscribe_mailto: str | None = None,
        test: bool = False,
        places: Municipalities | None = None,
    ) -> None:
        """`test` makes test sends: "[TEST]" before the subject, and a Message-ID of their own. `places`
        names the recipients' municipalities (the Runtime's list; the bundled one when None)."""
        self.event = event
        self.kind = kind
        self.sender = _single_line(sender, "INVITES_FROM")
        self.domain = sender_domain(sender)
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.now = now
        self.templates = templates
        self.dkim = dkim
        self.test = test
        self.places = places or load_municipalities()
        self.unsubscribe_mailto = _single_line(
            unsubscribe_mailto or default_unsubscribe_mailto(sender), "the unsubscribe address"
        )
        self.method = CALENDAR_METHOD.get(kind)
        # Checked here, before any recipient: a REQUEST for a cancelled event, an unknown kind or a broken
        # template stops the whole send.
        if self.method is not None:
            self._refuse_request(self.method)
        self._renderers = {language: self._renderer(language) for language in LANGUAGES}
        self._descriptions = {language: programme_text(event, language) for language in LANGUAGES}
        self._calendars: dict[tuple[str, str, str], CalendarTemplate] = {}
        date = format_datetime(now).encode("ascii")
        self._fixed_headers = {
            language: b"".join(
                (
                    b"Date: " + date + b"\r\n",
                    b"MIME-Version: 1.0\r\n",
                    b"Content-Language: " + language.encode() + b"\r\n",
                    b"Auto-Submitted: auto-generated\r\n",
                    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
                )
            )
            for language in LANGUAGES
        }
        self._from = folded("From", self.sender)
        self._subjects: dict[str, bytes] = {}
        # Keyed by id(); the skeleton is kept in the value so the id cannot be reused while cached.
        self._qp_skeletons: dict[int, tuple[Skeleton, QuotedPrintableSkeleton]] = {}

    def _renderer(self, language: str) -> MessageRenderer:
        templates = self.templates.get(self.kind, language, event_overrides(self.event, self.kind, language))
        fixed = {
            "event": event_context(self.event, language),
            "kind": self.kind,
            "links": calendar_links(self.event, programme_text(self.event, language)),
        }
        return MessageRenderer(templates, fixed, f"{self.kind}/{language}")

    def rsvp_url(self, invitation: Invited) -> str:
        return f"{self.base_url}/r/{make_token(self.secret, invitation.public_id, invitation.token_version)}"

    def unsubscribe_links(self, invitation: Invited) -> tuple[str, str]:
        """The https (RFC 8058 one-click) and mailto links of List-Unsubscribe."""
        token = unsubscribe_token(self.secret, invitation.public_id)
        return f"{self.base_url}/u/{token}", f"mailto:{self.unsubscribe_mailto}?subject=unsubscribe-{token}"

    def method_for(self, invitation: Invited, method: str | None = AUTO) -> str | None:
        """The iTIP method of the calendar part, or None for none. An rsvp-confirmation puts an accepted
        (or tentative) meeting in the calendar and takes a declined one out; a caller that knows the person
        never accepted passes method=None. Raises CancelledEvent for a REQUEST when the event is cancelled."""
        chosen: str | None
        if method != AUTO:
            if method not in (None, "REQUEST", "CANCEL"):
                raise InputError(f"unsupported calendar method {method!r}")
            chosen = method
        elif self.kind == "rsvp-confirmation":
            if invitation.answer is None:
                chosen = None
            else:
                chosen = "CANCEL" if invitation.answer == Answer.DECLINED else "REQUEST"
        else:
            chosen = self.method
        if chosen is not None:
            self._refuse_request(chosen)
        return chosen

    def _refuse_request(self, method: str) -> None:
        # After the CANCEL only another CANCEL may follow: a REQUEST of the same UID and SEQUENCE (or
        # higher) is the newest version of the meeting to every calendar, which puts it back.
        if method != "CANCEL" and self.event.status == EventStatus.CANCELLED:
            raise CancelledEvent(self.event.slug, self.kind)

    def _calendar_template(self, language: str, method: str, answer: Answer | None) -> CalendarTemplate:
        confirming = self.kind == "rsvp-confirmation" and answer is not None
        partstat = answer.value.upper() if confirming and answer else "NEEDS-ACTION"
        key = (language, method, partstat)
        if key not in self._calendars:
            event = self.event
            context = self._renderers[language].fixed["event"]
            # A cancellation outranks every request before it; an attendee's own CANCEL (declined) does
            # not, so that accepting again later is not ignored as stale. Cancelling the event raised its
            # sequence already (cancellation.cancel_event); before that, a preview shows the one to come.
            cancelled = event.status == EventStatus.CANCELLED
            sequence = event.sequence + 1 if self.kind == "cancellation" and not cancelled else event.sequence
            self._calendars[key] = CalendarTemplate(
                CalendarEvent(
                    uid=event.ics_uid,
                    sequence=sequence,
                    summary=event.title,
                    description=self._descriptions[language],
                    starts_at=event.starts_at,
                    ends_at=event.ends_at,
                    timezone=event.timezone,
                    location=context["location"],
                    geo=(event.venue_lat, event.venue_lon)
                    if event.venue_lat is not None and event.venue_lon is not None
                    else None,
                    organiser_name=event.organiser_name,
                    organiser_email=event.organiser_email or parseaddr(self.sender)[1],
                ),
                method,
                self.now,
                partstat=partstat,
                rsvp=not confirming,
            )
        return self._calendars[key]

    def calendar(
        self,
        recipient: Person,
        invitation: Invited,
        language: str | None = None,
        method: str | None = AUTO,
        *,
        fast: bool = True,
    ) -> bytes | None:
        """The .ics for one person, or None when this kind carries no calendar."""
        chosen = self.method_for(invitation, method)
        if chosen is None:
            return None
        template = self._calendar_template(self._language(recipient, language), chosen, invitation.answer)
        build = template.fast_for_attendee if fast else template.for_attendee
        return build(recipient.email, recipient.display_name, self.rsvp_url(invitation))

    def _language(self, recipient: Person, language: str | None) -> str:
        chosen = language or recipient.language or self.event.language
        if chosen not in LANGUAGES:
            chosen = self.event.language if self.event.language in LANGUAGES else "nl"
        return chosen

    def _personal(
        self, recipient: Person, invitation: Invited, language: str, url: str, https: str
    ) -> dict[str, Any]:
        return {
            "recipient": recipient_context(recipient, language, self.places),
            "links": {
                "rsvp": url,
                "accept": f"{url}?answer=accepted",
                "decline": f"{url}?answer=declined",
                "tentative": f"{url}?answer=tentative",
                "ics": f"{url}/invite.ics",
                "unsubscribe": https,
            },
            "invitation": {
                "waitlist_position": str(invitation.waitlist_position or ""),
            },
        }

    def _raw(self, invitation: Invited) -> dict[str, Any]:
        return {"answer": invitation.answer.value if invitation.answer else ""}

    def reference(
        self,
        recipient: Person,
        invitation: Invited,
        language: str | None = None,
        method: str | None = AUTO,
    ) -> Parts:
        """What the message says, rendered the plain way: every template and a whole new calendar."""
        language = self._language(recipient, language)
        unsubscribe = self.unsubscribe_links(invitation)[0]
        personal = self._personal(recipient, invitation, language, self.rsvp_url(invitation), unsubscribe)
        text = self._renderers[language].reference(personal, self._raw(invitation))
        ics = self.calendar(recipient, invitation, language, method, fast=False)
        return self._parts(text, ics, self.method_for(invitation, method))

    def parts(
        self,
        recipient: Person,
        invitation: Invited,
        language: str | None = None,
        method: str | None = AUTO,
    ) -> Parts:
        """What the message says, from the skeletons built once: the same as `reference`."""
        language = self._language(recipient, language)
        unsubscribe = self.unsubscribe_links(invitation)[0]
        filled, ics, chosen = self._fast(recipient, invitation, language, method, unsubscribe)
        return self._parts(filled.finished(), ics, chosen)

    def _fast(
        self, recipient: Person, invitation: Invited, language: str, method: str | None, https: str
    ) -> tuple[Filled, bytes | None, str | None]:
        url = self.rsvp_url(invitation)
        personal = self._personal(recipient, invitation, language, url, https)
        filled = self._renderers[language].fast(personal, self._raw(invitation))
        chosen = self.method_for(invitation, method)
        ics = None
        if chosen is not None:
            template = self._calendar_template(language, chosen, invitation.answer)
            ics = template.fast_for_attendee(recipient.email, recipient.display_name, url)
        return filled, ics, chosen

    def _parts(self, text: RenderedText, ics: bytes | None, method: str | None) -> Parts:
        return Parts(self._subject(text.subject), text.text, text.html, ics, method)

    def _subject(self, subject: str) -> str:
        return _single_line(f"[TEST] {subject}" if self.test else subject, "the subject")

    def _encoded(self, part: Skeleton | str, values: list[str]) -> bytes:
        if isinstance(part, str):
            return quoted_printable(part)
        encoder = self._qp_skeletons.get(id(part))
        if encoder is None:
            encoder = self._qp_skeletons[id(part)] = (part, QuotedPrintableSkeleton(part))
        return encoder[1].encode(values)

    def message_id(self, recipient: Person) -> str:
        if self.test:
            stamp = self.now.strftime("%Y%m%d%H%M%S")
            return f"<test.{self.kind}.{self.event.id}.{stamp}.{secrets.token_hex(6)}@{self.domain}>"
        return message_id(
            self.secret, self.domain, self.kind, self.event.id, recipient.id, self.event.sequence
        )

    def compose(
        self,
        recipient: Person,
        invitation: Invited,
        language: str | None = None,
        *,
        method: str | None = AUTO,
        message_id: str | None = None,
    ) -> Composed:
        """The RFC 5322 bytes for one recipient. Raises InputError on a template error or a forged field.

        `message_id` is the outbox row's, when there is one; else it is derived as the row's would be.
        """
        language = self._language(recipient, language)
        address = recipient.email
        to_header = address_header("To", recipient.display_name, address)
        https, mailto = self.unsubscribe_links(invitation)
        filled, ics, chosen = self._fast(recipient, invitation, language, method, https)
        subject_text = self._subject(filled.subject)
        subject = self._subjects.get(subject_text)
        if subject is None:
            subject = self._subjects[subject_text] = folded("Subject", subject_text)
        mid = _single_line(message_id, "the Message-ID") if message_id else self.message_id(recipient)
        data = self._mime(
            b"".join(
                (
                    self._from,
                    to_header,
                    subject,
                    b"Message-ID: " + mid.encode("ascii") + b"\r\n",
                    self._fixed_headers[language],
                    list_unsubscribe(https, mailto),
                )
            ),
            self._encoded(filled.text, filled.values),
            self._encoded(filled.html, filled.values),
            ics if chosen is not None else None,
            chosen,
            mid,
        )
        if self.dkim is not None:
            data = self.dkim.sign(data)
        return Composed(to=address, message_id=mid, subject=subject_text, data=data)

    def _mime(
        self, headers: bytes, text: bytes, html: bytes, ics: bytes | None, method: str | None, mid: str
    ) -> bytes:
        # "=_" never occurs in quoted-printable or base64 text, so these boundaries cannot clash with a body.
        tag = hashlib.sha256(mid.encode()).hexdigest()[:24]
        mixed, alternative = f"=_m{tag}".encode(), f"=_a{tag}".encode()
        body = [
            b"--" + alternative + b"\r\n",
            b'Content-Type: text/plain; charset="utf-8"\r\n',
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            text,
            b"\r\n--" + alternative + b"\r\n",
            b'Content-Type: text/html; charset="utf-8"\r\n',
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            html,
        ]
        if ics is None or method is None:
            body.append(b"\r\n--" + alternative + b"--\r\n")
            return b"".join(
                (
                    headers,
                    b'Content-Type: multipart/alternative; boundary="' + alternative + b'"\r\n\r\n',
                    *body,
                )
            )
        calendar = base64_lines(ics)
        return b"".join(
            (
                headers,
                b'Content-Type: multipart/mixed; boundary="' + mixed + b'"\r\n\r\n',
                b"--" + mixed + b"\r\n",
                b'Content-Type: multipart/alternative; boundary="' + alternative + b'"\r\n\r\n',
                *body,
                b"\r\n--" + alternative + b"\r\n",
                b'Content-Type: text/calendar; charset="utf-8"; method=' + method.encode() + b"\r\n",
                b"Content-Transfer-Encoding: base64\r\n\r\n",
                calendar,
                b"--" + alternative + b"--\r\n",
                b"\r\n--" + mixed + b"\r\n",
                b'Content-Type: application/ics; name="invite.ics"\r\n',
                b'Content-Disposition: attachment; filename="invite.ics"\r\n',
                b"Content-Transfer-Encoding: base64\r\n\r\n",
                calendar,
                b"--" + mixed + b"--\r\n",
            )
        )
