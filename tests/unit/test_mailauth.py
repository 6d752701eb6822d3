"""Who sent a calendar reply: the From read strictly, the one Authentication-Results header that counts, DKIM
alignment, and the verdict on whole mails in the shapes Outlook, Google and Apple send."""

from __future__ import annotations

import re
from collections.abc import Callable

import dkim  # type: ignore[import-untyped]
import pytest

from invites.domain.mailauth import (
    BadFrom,
    Check,
    Sender,
    ServerHeader,
    aligned,
    authenticate,
    nameserver,
    parse_from,
    passes,
    read_header,
    topmost_trusted,
    verify_dkim,
)
from tests.reply_samples import (
    apple,
    authentication_results,
    google,
    outlook,
    signing_key,
    with_from,
    with_headers,
)

UID = "3f2a9c-lokaal-samenspel-2018@invites"
OURS = frozenset({"mx.example.org"})
ZOE = Sender("zoe@example.nl", "example.nl")


@pytest.mark.parametrize(
    ("value", "mailbox"),
    [
        ("zoe@example.nl", "zoe@example.nl"),
        ("Zoe <Zoe@Example.NL>", "zoe@example.nl"),
        ("=?utf-8?Q?Zo=C3=AB_van_der_Berg?= <zoe@example.nl>", "zoe@example.nl"),
        ('"Berg, Zoë van der" <zoe@example.nl>', "zoe@example.nl"),
        ("zoe@example.nl (Zoë)", "zoe@example.nl"),
        ("Zoë\r\n <zoe@example.nl>", "zoe@example.nl"),
    ],
    ids=["bare", "named", "encoded-name", "quoted-comma", "comment", "folded"],
)
def test_a_plain_from_gives_its_one_mailbox(value: str, mailbox: str) -> None:
    assert parse_from([value]) == Sender(mailbox, "example.nl")


@pytest.mark.parametrize(
    ("values", "why"),
    [
        (["zoe@example.nl <mallory@evil.example>"], "niet te lezen|dubbelzinnig"),
        (['"zoe@example.nl" <mallory@evil.example>'], "bevat een e-mailadres"),
        (["=?utf-8?q?zoe=40example.nl?= <mallory@evil.example>"], "bevat een e-mailadres"),
        (["<zoe@example.nl> mallory@evil.example"], "niet te lezen"),
        (["zoe@example.nl, mallory@evil.example"], "2 adressen"),
        (["Mallory <mallory@evil.example>", "zoe@example.nl"], "meer dan één From-regel"),
        (["Genodigden: zoe@example.nl;"], "groep"),
        (["undisclosed-recipients:;"], "groep"),
        ([], "geen From-regel"),
        ([""], "0 adressen"),
        (["zoe"], "niet te lezen"),
        (["zoe@"], "niet te lezen"),
        (["zoe@[192.0.2.1]"], "geen domein"),
        (["Zoe <zoe@example.nl"], "niet te lezen"),
    ],
    ids=[
        "address-as-name",
        "quoted-address-as-name",
        "encoded-address-as-name",
        "address-then-word",
        "two-mailboxes",
        "two-from-fields",
        "group",
        "empty-group",
        "missing",
        "empty",
        "no-domain",
        "dangling-at",
        "domain-literal",
        "unclosed",
    ],
)
def test_a_from_that_is_not_one_plain_mailbox_is_refused(values: list[str], why: str) -> None:
    with pytest.raises(BadFrom, match=f"afzender ongeldig: .*({why})"):
        parse_from(values)


@pytest.mark.parametrize(
    ("from_domain", "signer", "expected"),
    [
        ("example.nl", "example.nl", True),
        ("Example.NL.", "example.nl", True),
        ("mail.example.nl", "example.nl", True),
        ("example.nl", "mail.example.nl", False),
        ("evilexample.nl", "example.nl", False),
        ("example.nl.evil.example", "example.nl", False),
        ("example.nl", "nl", False),
        ("example.nl", "", False),
    ],
    ids=["same", "case-and-dot", "subdomain", "parent", "suffix-trick", "suffix-domain", "tld", "none"],
)
def test_alignment_is_the_same_domain_or_a_subdomain_of_the_signer(
    from_domain: str, signer: str, expected: bool
) -> None:
    assert aligned(from_domain, signer) is expected


def test_a_header_is_read_with_comments_versions_and_folding() -> None:
    header = read_header(
        "(our MX) mx.Example.org 1;\r\n dkim=pass (good) header.d=Example.nl header.s=sel;\r\n"
        " spf=pass smtp.mailfrom=example.nl;\r\n dmarc=pass (p=reject) header.from=example.nl"
    )
    assert header == ServerHeader(
        "mx.example.org", (Check("dkim", "pass", "example.nl"), Check("dmarc", "pass", "example.nl"))
    )
    assert read_header("mx.example.org; dkim=pass header.i=@mail.example.nl").checks == (
        Check("dkim", "pass", "mail.example.nl"),
    )
    assert read_header("mx.example.org; none") == ServerHeader("mx.example.org")


def test_a_header_without_an_authserv_id_is_nobodys() -> None:
    # Microsoft 365 writes its results without an authserv-id (RFC 8601 requires one): they cannot be told
    # apart from a sender's own.
    header = read_header(
        "spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=example.nl; dkim=pass (signature was verified)"
        " header.d=example.nl;dmarc=pass action=none header.from=example.nl;compauth=pass reason=100"
    )
    assert header.authserv_id == "spf=pass" and not header.readable
    assert topmost_trusted([header], OURS) is None


def test_only_the_topmost_header_of_a_trusted_server_counts() -> None:
    forged = ServerHeader("mx.example.org", (Check("dmarc", "pass", "example.nl"),))
    others = ServerHeader("mx.evil.example", (Check("dmarc", "pass", "example.nl"),))
    ours = ServerHeader("mx.example.org", (Check("dmarc", "fail", "example.nl"),))
    assert topmost_trusted([others, ours, forged], OURS) is ours
    assert topmost_trusted([others], OURS) is None
    unreadable = read_header("mx.example.org; dmarc")
    assert not unreadable.readable and topmost_trusted([unreadable, forged], OURS) is unreadable


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (Check("dmarc", "pass", "example.nl"), True),
        (Check("dmarc", "pass"), True),
        (Check("dmarc", "pass", "evil.example"), False),
        (Check("dmarc", "fail", "example.nl"), False),
        (Check("dkim", "pass", "example.nl"), True),
        (Check("dkim", "pass", "evil.example"), False),
        (Check("dkim", "pass"), False),
        (Check("dkim", "neutral", "example.nl"), False),
        (Check("spf", "pass", "example.nl"), False),
    ],
    ids=[
        "dmarc",
        "dmarc-no-domain",
        "dmarc-other",
        "dmarc-fail",
        "dkim",
        "dkim-other",
        "dkim-no-d",
        "dkim-neutral",
        "spf",
    ],
)
def test_a_pass_counts_for_the_from_domain_only(check: Check, expected: bool) -> None:
    assert passes(check, ZOE) is expected


CLIENTS: list[Callable[[str, str], bytes]] = [outlook, google, apple]


def ar(results: str, authserv_id: str = "mx.example.org") -> str:
    return authentication_results(results, authserv_id)


@pytest.mark.parametrize("client", CLIENTS, ids=["outlook", "google", "apple"])
def test_a_trusted_pass_authenticates_and_says_how(client: Callable[[str, str], bytes]) -> None:
    mail = with_headers(client(UID, "zoe@example.nl"), ar("dkim=fail header.d=example.nl; dmarc=pass"))
    verdict = authenticate(mail, OURS, "imap")
    assert (verdict.authenticated, verdict.sender, verdict.reason) == (True, "zoe@example.nl", "")
    assert verdict.evidence == {
        "door": "imap",
        "from": "zoe@example.nl",
        "authserv_ids_seen": ["mx.example.org"],
        "authserv_id": "mx.example.org",
        "results": [
            {"method": "dkim", "result": "fail", "domain": "example.nl"},
            {"method": "dmarc", "result": "pass", "domain": ""},
        ],
        "authenticated_by": "dmarc",
    }


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([], "geen Authentication-Results van de eigen mailserver"),
        ([ar("dmarc=pass", "mx.evil.example")], r"eigen mailserver \(wel van mx.evil.example\)"),
        ([ar("dmarc=fail header.from=example.nl")], r"meldt dmarc=fail \(example.nl\)"),
        ([ar("dmarc=pass header.from=evil.example")], r"meldt dmarc=pass \(evil.example\)"),
        ([ar("dkim=pass header.d=evil.example")], r"meldt dkim=pass \(evil.example\)"),
        ([ar("none"), ar("dmarc=pass")], "meldt geen DMARC of DKIM"),
        ([ar("dmarc=fail"), ar("dmarc=pass")], "meldt dmarc=fail"),
        ([ar("dmarc"), ar("dmarc=pass")], "onleesbaar"),
    ],
    ids=[
        "missing",
        "untrusted",
        "dmarc-fail",
        "other-domain",
        "unaligned-dkim",
        "forged-below-none",
        "forged-below-fail",
        "forged-below-unreadable",
    ],
)
def test_without_a_trusted_pass_the_sender_is_not_verified(headers: list[str], reason: str) -> None:
    verdict = authenticate(with_headers(google(UID, "zoe@example.nl"), *headers), OURS, "imap")
    assert not verdict.authenticated and verdict.sender == "zoe@example.nl"
    assert verdict.reason.startswith("afzender niet geverifieerd: ")
    assert re.search(reason, verdict.reason), verdict.reason


def test_with_no_trusted_server_configured_nothing_is_verified() -> None:
    mail = with_headers(apple(UID, "zoe@example.nl"), ar("dmarc=pass"))
    verdict = authenticate(mail, frozenset(), "imap")
    assert not verdict.authenticated and "INVITES_REPLY_AUTHSERV_IDS" in verdict.reason


def test_reply_to_and_the_display_name_never_change_who_sent_it() -> None:
    mail = with_headers(
        outlook(UID, "zoe@example.nl", sender="mallory@evil.example"),
        ar("dmarc=pass header.from=evil.example"),
        "Reply-To: Zoe <zoe@example.nl>",
    )
    verdict = authenticate(mail, OURS, "smtp")
    assert verdict.authenticated and verdict.sender == "mallory@evil.example"
    forged = with_from(mail, "zoe@example.nl <mallory@evil.example>")
    verdict = authenticate(forged, OURS, "smtp")
    assert not verdict.authenticated and verdict.sender == ""
    assert verdict.reason.startswith("afzender ongeldig")
    assert verdict.evidence["from"] == "zoe@example.nl <mallory@evil.example>"


def records(*keys: tuple[str, str]) -> Callable[..., bytes | None]:
    """A DNS lookup over a table: the collaborator of the pure DKIM check (the real resolver is tested
    against a DNS server in tests/integration/test_replies.py)."""
    table = {f"{name}.".encode(): record.encode() for name, record in keys}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return table.get(name)

    return lookup


def test_own_dkim_check_reads_each_signature_and_refuses_a_body_length() -> None:
    ours, theirs = signing_key("example.nl"), signing_key("evil.example")
    lookup = records((ours.name, ours.record), (theirs.name, theirs.record))
    mail = google(UID, "zoe@example.nl")
    assert verify_dkim(mail, lookup) == ()
    assert verify_dkim(theirs.sign(ours.sign(mail)), lookup) == (
        Check("dkim", "pass", "evil.example"),
        Check("dkim", "pass", "example.nl"),
    )
    tampered = ours.sign(mail).replace(b"PARTSTAT=DECLINED", b"PARTSTAT=ACCEPTED")
    assert verify_dkim(tampered, lookup) == (Check("dkim", "fail (body hash mismatch)", "example.nl"),)
    with_length = dkim.sign(mail, b"sel", b"example.nl", ours.key.private_key, length=True) + mail
    assert verify_dkim(with_length, lookup) == (Check("dkim", "policy (l=)", "example.nl"),)
    # A key that is not in DNS (another selector) verifies nothing.
    unpublished = signing_key("example.nl", "other").sign(mail)
    assert verify_dkim(unpublished, lookup) == (Check("dkim", "fail", "example.nl"),)


def test_own_dkim_check_authenticates_only_an_aligned_signature() -> None:
    ours, theirs = signing_key("example.nl"), signing_key("evil.example")
    lookup = records((ours.name, ours.record), (theirs.name, theirs.record))
    mail = apple(UID, "zoe@example.nl")
    verdict = authenticate(ours.sign(mail), OURS, "smtp", lookup)
    assert verdict.authenticated and verdict.evidence["authenticated_by"] == "own-dkim"
    verdict = authenticate(theirs.sign(mail), OURS, "smtp", lookup)
    assert not verdict.authenticated
    assert verdict.reason == (
        "afzender niet geverifieerd: geen Authentication-Results van de eigen mailserver; "
        "geen geldige DKIM-handtekening van example.nl (evil.example: pass)"
    )
    assert verdict.evidence["dkim"] == [{"method": "dkim", "result": "pass", "domain": "evil.example"}]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("unbound", ("unbound", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("::1", ("::1", 53)),
    ],
)
def test_the_resolver_setting_is_host_or_host_and_port(setting: str, expected: tuple[str, int]) -> None:
    assert nameserver(setting) == expected


@pytest.mark.parametrize("setting", ["127.0.0.1:dns", ":53", "127.0.0.1:0", "[::1]:99999"])
def test_a_bad_resolver_setting_names_the_setting(setting: str) -> None:
    with pytest.raises(ValueError, match="INVITES_DNS_RESOLVER"):
        nameserver(setting)


def test_a_line_that_is_no_header_field_hides_nothing() -> None:
    # Our parser ends the header at the stray line; another may read on and find Mallory's From below it.
    mail = b"From: zoe@example.nl\r\nnot a header\r\nFrom: mallory@evil.example\r\n\r\nbody\r\n"
    verdict = authenticate(with_headers(mail, ar("dmarc=pass")), OURS, "imap")
    assert not verdict.authenticated and verdict.reason.startswith("afzender ongeldig: de kopregels")


def test_a_header_from_written_as_an_address_means_its_domain() -> None:
    assert read_header("mx.example.org; dmarc=pass header.from=zoe@Example.nl").checks == (
        Check("dmarc", "pass", "example.nl"),
    )
