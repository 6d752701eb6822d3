"""VERP addresses: they name their row, and cannot be forged without the secret. Reports: the addresses
they name, and who sent them as the organisation's own mail server found."""

from __future__ import annotations

from invites.services.bounces import Reporter, Trust, parse_dsn, parse_verp, reporter, verp_address
from invites.settings import Settings


def test_a_verp_address_names_its_row() -> None:
    address = verp_address("secret", 1234, "example.org")
    assert address.startswith("bounces+1234.") and address.endswith("@example.org")
    assert parse_verp("secret", address) == 1234
    assert parse_verp("secret", f"Mail Delivery <{address.upper()}>") == 1234


def test_a_forged_or_foreign_address_names_nothing() -> None:
    assert parse_verp("secret", verp_address("other", 1234, "example.org")) is None
    assert parse_verp("secret", verp_address("secret", 1234, "example.org").replace("1234", "1235")) is None
    assert parse_verp("secret", "uitnodigingen@example.org") is None


def report(*headers: str, final: str = "gone@example.nl", original: str = "gone@example.nl") -> bytes:
    return (
        "".join(f"{h}\r\n" for h in headers)
        + "From: MAILER-DAEMON@mx.example.nl\r\nTo: uitnodigingen@example.org\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.nl\r\n\r\n"
        f"Final-Recipient: rfc822; {final}\r\nOriginal-Recipient: rfc822;{original}\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <m@example.org>\r\n\r\n--B--\r\n"
    ).encode()


def test_a_report_names_its_final_and_its_original_recipient() -> None:
    (dsn,) = parse_dsn(report(final="Gone@Mail.Example.nl", original="gone@example.nl"))
    assert dsn.recipient == "Gone@Mail.Example.nl"
    assert dsn.recipients == ("gone@mail.example.nl", "gone@example.nl")
    (same,) = parse_dsn(report(final="gone@example.nl", original="GONE@example.nl"))
    assert same.recipients == ("gone@example.nl",)


def test_the_reporter_is_whom_our_own_server_authenticated() -> None:
    trust = Trust.of(
        Settings(
            from_="VNG <uitnodigingen@Example.org>", reply_authserv_ids="mx.example.org, mx2.example.org"
        )
    )
    assert trust.own_domains == frozenset({"example.org"})
    ours = "Authentication-Results: mx.example.org; dmarc=pass header.from=mx.example.nl"
    assert reporter(report(ours), trust) == Reporter("mx.example.nl")
    theirs = "Authentication-Results: mx.example.com; dmarc=pass header.from=mx.example.nl"
    refused = reporter(report(theirs), trust)
    assert refused.domain == "" and "mx.example.com" in refused.reason
    assert reporter(report(theirs), Trust(frozenset(), trust.own_domains)).domain == ""
