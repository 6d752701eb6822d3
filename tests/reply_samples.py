"""iMIP REPLY mails in the forms Outlook (Exchange), Google Calendar and Apple Calendar send them: their MIME
structure, transfer encodings, PRODIDs and ATTENDEE parameters, for a given event UID and attendee; and what
the way to the organiser adds to them: header fields on top (Authentication-Results, Reply-To), a DKIM
signature by a key made here."""

from __future__ import annotations

import base64
import quopri
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from invites.messages.compose import DkimKey

ORGANIZER = "ORGANIZER;CN=VNG afdeling Utrecht:mailto:uitnodigingen@example.org"


def _b64(text: str) -> str:
    return base64.encodebytes(text.encode()).decode().replace("\n", "\r\n")


def _ics(
    uid: str,
    prodid: str,
    attendee: str,
    extra: str,
    method: str = "REPLY",
    organizer: bool = True,
    stamped: datetime | None = None,
) -> str:
    # DTSTAMP: when the calendar made the reply; now, unless a test replays an old one.
    stamp = (stamped or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return (
        "BEGIN:VCALENDAR\r\n"
        f"PRODID:{prodid}\r\nVERSION:2.0\r\nMETHOD:{method}\r\n"
        "BEGIN:VEVENT\r\n" + (f"{ORGANIZER}\r\n" if organizer else "") + f"{attendee}\r\n"
        "DTSTART;TZID=Europe/Amsterdam:20180213T193000\r\nDTEND;TZID=Europe/Amsterdam:20180213T220000\r\n"
        f"UID:{uid}\r\nSEQUENCE:0\r\nDTSTAMP:{stamp}\r\n{extra}"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def outlook(
    uid: str,
    address: str,
    partstat: str = "ACCEPTED",
    sender: str | None = None,
    method: str = "REPLY",
    stamped: datetime | None = None,
) -> bytes:
    ics = _ics(
        uid,
        "Microsoft Exchange Server 2010",
        f"ATTENDEE;PARTSTAT={partstat};CN=Zoë van der Berg:mailto:{address}",
        "SUMMARY;LANGUAGE=nl-NL:Geaccepteerd: Inspiratiebijeenkomst Lokaal samenspel in verandering\r\n"
        "CLASS:PUBLIC\r\nPRIORITY:5\r\nTRANSP:OPAQUE\r\nSTATUS:CONFIRMED\r\n",
        method,
        # Exchange leaves ORGANIZER out of its replies (nextcloud/server#53949).
        organizer=False,
        stamped=stamped,
    )
    return (
        f"From: =?utf-8?Q?Zo=C3=AB_van_der_Berg?= <{sender or address}>\r\n"
        "To: VNG afdeling Utrecht <uitnodigingen@example.org>\r\n"
        "Subject: =?utf-8?Q?Geaccepteerd:_Inspiratiebijeenkomst_Lokaal_samenspel?=\r\n"
        "Date: Sat, 20 Jan 2018 11:15:00 +0100\r\n"
        "Message-ID: <AM0PR01MB1234@AM0PR01MB1234.eurprd01.prod.exchangelabs.com>\r\n"
        'Content-Type: multipart/alternative; boundary="_000_outlook_"\r\n'
        "MIME-Version: 1.0\r\n\r\n"
        '--_000_outlook_\r\nContent-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        + _b64("Geaccepteerd\r\n")
        + '\r\n--_000_outlook_\r\nContent-Type: text/calendar; charset="utf-8"; method=REPLY\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + _b64(ics) + "\r\n--_000_outlook_--\r\n"
    ).encode()


def google(uid: str, address: str, partstat: str = "DECLINED") -> bytes:
    ics = _ics(
        uid,
        "-//Google Inc//Google Calendar 70.9054//EN",
        "ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=" + partstat + ";CN=Bram\r\n"
        f" Bakker;X-NUM-GUESTS=0:mailto:{address}",
        "SUMMARY:Inspiratiebijeenkomst Lokaal samenspel in verandering\r\nSTATUS:CONFIRMED\r\n",
    )
    return (
        f"From: Bram Bakker <{address}>\r\nTo: uitnodigingen@example.org\r\n"
        "Subject: Afgewezen: Inspiratiebijeenkomst Lokaal samenspel in verandering @ di 13 feb 2018\r\n"
        " 19:30 - 22:00 (CET) (uitnodigingen@example.org)\r\n"
        "Date: Sat, 20 Jan 2018 10:15:00 +0000\r\nMessage-ID: <0000000000001234abcd@google.com>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="000000000000mixed"\r\n\r\n'
        '--000000000000mixed\r\nContent-Type: multipart/alternative; boundary="000000000000alt"\r\n\r\n'
        '--000000000000alt\r\nContent-Type: text/plain; charset="UTF-8"; format=flowed; delsp=yes\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        + _b64("Bram Bakker heeft deze uitnodiging afgewezen.")
        + '\r\n--000000000000alt\r\nContent-Type: text/html; charset="UTF-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        "<span>Bram Bakker heeft deze uitnodiging afgewezen.</span>\r\n"
        '--000000000000alt\r\nContent-Type: text/calendar; charset="UTF-8"; method=REPLY\r\n'
        "Content-Transfer-Encoding: 7bit\r\n\r\n" + ics + "\r\n--000000000000alt--\r\n"
        '--000000000000mixed\r\nContent-Type: application/ics; name="invite.ics"\r\n'
        'Content-Disposition: attachment; filename="invite.ics"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + _b64(ics)
        + "\r\n--000000000000mixed--\r\n"
    ).encode()


def apple(uid: str, address: str, partstat: str = "TENTATIVE") -> bytes:
    ics = _ics(
        uid,
        "-//Apple Inc.//macOS 14.2.1//EN",
        f'ATTENDEE;CN="Anne de Vries";EMAIL={address};PARTSTAT={partstat};ROLE=REQ-PARTICIPANT;RSVP=TRUE:'
        f"mailto:{address}",
        "SUMMARY:Inspiratiebijeenkomst Lokaal samenspel in verandering\r\nLAST-MODIFIED:20180120T101500Z\r\n",
    )
    return (
        f"From: Anne de Vries <{address}>\r\n"
        'Content-Type: multipart/mixed; boundary="Apple-Mail=_1234"\r\n'
        "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3774.300.61.1.2\\))\r\n"
        "Subject: Uitnodiging: Inspiratiebijeenkomst Lokaal samenspel in verandering (voorlopig)\r\n"
        "Date: Sat, 20 Jan 2018 11:15:00 +0100\r\nTo: uitnodigingen@example.org\r\n"
        "Message-Id: <ABCD-1234@example.nl>\r\n\r\n"
        "--Apple-Mail=_1234\r\nContent-Transfer-Encoding: 7bit\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n\r\n"
        "--Apple-Mail=_1234\r\nContent-Disposition: attachment; filename=iCal-20180120-111500.ics\r\n"
        "Content-Type: text/calendar; charset=utf-8; method=REPLY; name=iCal-20180120-111500.ics\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        # Quoted-printable with the calendar's own line breaks as the transport's CRLFs.
        + quopri.encodestring(ics.replace("\r\n", "\n").encode()).decode().replace("\n", "\r\n")
        + "\r\n--Apple-Mail=_1234--\r\n"
    ).encode()


def with_headers(data: bytes, *lines: str) -> bytes:
    """The mail with header fields added on top, in this order, as a server on the way adds its own."""
    return "".join(f"{line}\r\n" for line in lines).encode() + data


def with_from(data: bytes, value: str) -> bytes:
    """The mail with the value of its From field replaced."""
    return re.sub(rb"(?m)^From: [^\r\n]*", b"From: " + value.encode(), data, count=1)


def authentication_results(results: str, authserv_id: str = "mx.example.org") -> str:
    """An Authentication-Results field as the server `authserv_id` writes it."""
    return f"Authentication-Results: {authserv_id};\r\n {results}"


def body_of(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[1]


def head_of(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


@dataclass(frozen=True)
class SigningKey:
    """A sender's DKIM key (invites.messages.compose's signer), and the TXT record that publishes it at
    `name`."""

    key: DkimKey
    record: str

    @property
    def name(self) -> str:
        return f"{self.key.selector}._domainkey.{self.key.domain}"

    def sign(self, data: bytes) -> bytes:
        """The mail with this key's DKIM-Signature on top."""
        return self.key.sign(data)


@cache
def signing_key(domain: str, selector: str = "sel") -> SigningKey:
    """A new 2048-bit RSA key for `domain` (openssl), made once per test process."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is needed to make a DKIM test key")
    private = subprocess.run(
        [openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        check=True,
        capture_output=True,
    ).stdout
    public = subprocess.run(
        [openssl, "pkey", "-pubout", "-outform", "DER"], input=private, check=True, capture_output=True
    ).stdout
    record = f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"
    return SigningKey(DkimKey(selector, domain, private), record)
