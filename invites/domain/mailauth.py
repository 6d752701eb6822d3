"""Whether a mail's sender is who its From says: what keeps forged calendar replies out of the counts.

Anyone can send the organiser's inbox a mail with any From. A sender counts as authenticated only when
- the organisation's own mail server says so in the Authentication-Results header it added (RFC 8601):
  `dmarc=pass` for the From domain, or `dkim=pass` for a domain the From domain is aligned with. Only the
  topmost such header of a trusted authserv-id (INVITES_REPLY_AUTHSERV_IDS) counts: a server adds its own
  header above what the message already carried, so any header below it, and any header of another
  authserv-id, may have been written by the sender;
- or, where the mail is handed to us straight from the sending side (the inbound SMTP endpoint), when our own
  DKIM check finds a valid signature of a domain the From domain is aligned with.
The From must be exactly one plain mailbox; anything a lenient parser could read two ways is refused, since
the server that checked DMARC may have read it the other way.

Pure: no database. The one I/O, the DKIM check's DNS lookup, is a function handed in (`dns_lookup` builds it
from INVITES_DNS_RESOLVER).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from email import policy
from email.errors import MissingHeaderBodySeparatorDefect
from email.headerregistry import AddressHeader, BaseHeader
from email.parser import HeaderParser
from email.utils import getaddresses
from typing import Any, Literal, Protocol

import authres  # type: ignore[import-untyped]
import authres.dmarc  # type: ignore[import-untyped]
import dkim  # type: ignore[import-untyped]
import dns.exception
import dns.resolver

Door = Literal["smtp", "imap"]

NOT_VERIFIED = "afzender niet geverifieerd"
BAD_FROM = "afzender ongeldig"
# Results of RFC 8601 that say a signature or policy check held.
PASS = "pass"
# The ways a sender is authenticated, named in the evidence of a recorded reply.
BY_DMARC, BY_DKIM, BY_OWN_DKIM = "dmarc", "dkim", "own-dkim"
_BY = {"dmarc": BY_DMARC, "dkim": BY_DKIM}

_AR_FEATURES = authres.FeatureContext(authres.dmarc)
# The authserv-id as a lenient reader finds it: the first word, after any comments, before the first ";".
_LEADING_ID = re.compile(r'^\s*(?:\((?:[^()\\]|\\.)*\)\s*)*"?([^\s;()"]+)')
_FOLD = re.compile(r"\r?\n(?=[ \t])")


class BadFrom(ValueError):
    """The From is not exactly one plain mailbox; the message says why, in Dutch, for the organiser."""


@dataclass(frozen=True)
class Sender:
    mailbox: str  # the addr-spec, casefolded
    domain: str  # its domain, casefolded, in ASCII (punycode)


@dataclass(frozen=True)
class Check:
    """One authentication result: the method (dmarc or dkim), what it said, and for which domain ("" when
    the header names none)."""

    method: str
    result: str
    domain: str = ""

    def as_evidence(self) -> dict[str, str]:
        return {"method": self.method, "result": self.result, "domain": self.domain}


@dataclass(frozen=True)
class ServerHeader:
    """One Authentication-Results header as read: who wrote it (its authserv-id) and its DMARC and DKIM
    results; not readable when its authserv-id was found but the rest could not be parsed."""

    authserv_id: str
    checks: tuple[Check, ...] = ()
    readable: bool = True


@dataclass(frozen=True)
class Verdict:
    """Whether the sender is authenticated; `sender` is the From mailbox ("" when the From is unusable),
    `reason` the Dutch reason for the organiser when not, `evidence` what was checked."""

    authenticated: bool
    sender: str
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


class TxtLookup(Protocol):
    """dkimpy's DNS function: the TXT record at a name (joined), or None when there is none."""

    def __call__(self, name: bytes, timeout: int = 5) -> bytes | None: ...


def normal_domain(domain: str) -> str:
    """A domain as compared here: casefolded, without a trailing dot, in ASCII (IDNA) when it can be."""
    domain = domain.strip().rstrip(".").casefold()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def aligned(from_domain: str, signing_domain: str) -> bool:
    """Whether a signature by `signing_domain` speaks for mail from `from_domain`: the same domain, or the
    From domain is a subdomain of it (DMARC's relaxed alignment). A top-level domain speaks for nobody."""
    signer, sender = normal_domain(signing_domain), normal_domain(from_domain)
    if "." not in signer:
        return False
    return sender == signer or sender.endswith("." + signer)


def parse_from(values: Sequence[str]) -> Sender:
    """The one mailbox of a message's From header fields (their raw values). Raises BadFrom unless there is
    exactly one field naming exactly one mailbox with a domain, in plain syntax: no group, no second address,
    no display name that holds an address, nothing the parser had to guess at."""
    if not values:
        raise BadFrom(f"{BAD_FROM}: geen From-regel")
    if len(values) > 1:
        raise BadFrom(f"{BAD_FROM}: meer dan één From-regel")
    value = _FOLD.sub("", values[0])
    try:
        header = policy.default.header_factory("From", value)
    except Exception:  # the header parser fails in many ways on hostile input ("a@", say); none is a mailbox
        raise BadFrom(f"{BAD_FROM}: de From-regel is niet te lezen") from None
    if not isinstance(header, AddressHeader) or not isinstance(header, BaseHeader) or header.defects:
        raise BadFrom(f"{BAD_FROM}: de From-regel is niet te lezen")
    if any(group.display_name is not None for group in header.groups):
        raise BadFrom(f"{BAD_FROM}: de From-regel is een groep")
    if len(header.addresses) != 1:
        raise BadFrom(f"{BAD_FROM}: de From-regel noemt {len(header.addresses)} adressen, niet één")
    address = header.addresses[0]
    if "@" in address.display_name:
        raise BadFrom(f"{BAD_FROM}: de naam in de From-regel bevat een e-mailadres ({address.display_name})")
    if not address.username or not address.domain or address.domain.startswith("["):
        raise BadFrom(f"{BAD_FROM}: het adres in de From-regel heeft geen domein")
    # A second, older parser must read the same single mailbox: where two parsers differ, the server that
    # checked DMARC may have read a different From than we do.
    others = [addr for _, addr in getaddresses([value]) if addr]
    if [addr.casefold() for addr in others] != [address.addr_spec.casefold()]:
        raise BadFrom(f"{BAD_FROM}: de From-regel is dubbelzinnig")
    return Sender(address.addr_spec.casefold(), normal_domain(address.domain))


def read_header(value: str) -> ServerHeader:
    """An Authentication-Results header value (folded or not) as read: its authserv-id (lowercase), and its
    DMARC and DKIM results. A header that does not parse keeps the authserv-id a lenient reader finds, so that
    an unreadable header of our own server still stands above whatever is below it."""
    value = _FOLD.sub("", value)
    try:
        parsed = _AR_FEATURES.parse_value(value)
    except authres.AuthResError:
        leading = _LEADING_ID.match(value)
        return ServerHeader(leading[1].casefold() if leading else "", readable=False)
    checks = []
    for result in parsed.results:
        method = str(result.method).lower()
        if method == "dmarc":
            # header.from is the From's domain; a server that writes the whole address means the same.
            domain = _property(result, "from").rpartition("@")[2]
        elif method == "dkim":
            # header.d names the signing domain; older servers give only header.i, whose domain is d= or
            # below it, so aligning on it is never looser.
            domain = _property(result, "d") or _property(result, "i").rpartition("@")[2]
        else:
            continue
        checks.append(Check(method, str(result.result).lower(), normal_domain(domain) if domain else ""))
    return ServerHeader(str(parsed.authserv_id).casefold(), tuple(checks))


def _property(result: Any, name: str) -> str:
    for prop in result.properties:
        if str(prop.type).lower() == "header" and str(prop.name).lower() == name:
            return str(prop.value or "")
    return ""


def topmost_trusted(headers: Sequence[ServerHeader], trusted: frozenset[str]) -> ServerHeader | None:
    """The header our own server added (`headers` in message order, topmost first): the first one of a trusted
    authserv-id. Everything below it was in the message before it reached that server."""
    return next((header for header in headers if header.authserv_id in trusted), None)


def passes(check: Check, sender: Sender) -> bool:
    """Whether one result authenticates the sender's domain: DMARC passed for it (or for the From, when the
    header does not name the domain), or a DKIM signature of an aligned domain verified."""
    if check.result != PASS:
        return False
    if check.method == "dmarc":
        return not check.domain or check.domain == sender.domain
    return check.method == "dkim" and bool(check.domain) and aligned(sender.domain, check.domain)


def verify_dkim(data: bytes, lookup: TxtLookup) -> tuple[Check, ...]:
    """Our own check of each DKIM signature of a message, through `lookup` for the keys: (dkim, result, d=).

    A signature with a body length (l=) is refused as `policy`: what follows that length is unsigned, and a
    sender could append a calendar of their own there.
    """
    checks = []
    try:
        verifier = dkim.DKIM(data)
        count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    except dkim.DKIMException as exc:
        return (Check("dkim", f"permerror ({str(exc)[:80]})"),)
    for index in range(count):
        verifier.signature_fields = {}  # what a signature too broken to parse leaves: no d= of an earlier one
        try:
            valid = bool(verifier.verify(idx=index, dnsfunc=lookup))
            result = PASS if valid else "fail"
        except dkim.ValidationError as exc:
            # A broken signature ("body hash mismatch (got …)"): the reason without the hashes.
            result = f"fail ({str(exc).partition(' (')[0][:80]})"
        except dkim.DKIMException as exc:
            result = f"permerror ({str(exc)[:80]})"
        fields = verifier.signature_fields or {}
        domain = normal_domain(bytes(fields.get(b"d", b"")).decode("ascii", "replace"))
        if result == PASS and b"l" in fields:
            result = "policy (l=)"
        checks.append(Check("dkim", result, domain))
    return tuple(checks)


def authenticate(
    data: bytes, trusted: frozenset[str], door: Door, lookup: TxtLookup | None = None
) -> Verdict:
    """Whether a mail's sender is authenticated, by our server's Authentication-Results or (when `lookup` is
    given: the SMTP door) by our own DKIM check; with the reason when not, and what was checked."""
    headers = HeaderParser(policy=policy.compat32).parsestr(data.decode("utf-8", "replace"), headersonly=True)
    raw_from = [str(value) for value in headers.get_all("From") or []]
    read = [read_header(str(value)) for value in headers.get_all("Authentication-Results") or []]
    server = topmost_trusted(read, trusted)
    evidence: dict[str, Any] = {
        "door": door,
        "authserv_ids_seen": [header.authserv_id for header in read],
        "authserv_id": server.authserv_id if server else None,
        "results": [check.as_evidence() for check in server.checks] if server else [],
    }
    try:
        if any(isinstance(defect, MissingHeaderBodySeparatorDefect) for defect in headers.defects):
            # A line that is no header field ends the header here, not everywhere: another reader may find
            # a second From below it.
            raise BadFrom(f"{BAD_FROM}: de kopregels van het bericht zijn niet te lezen")
        sender = parse_from(raw_from)
    except BadFrom as exc:
        evidence["from"] = " | ".join(raw_from)[:500]
        return Verdict(False, "", str(exc), evidence)
    evidence["from"] = sender.mailbox
    by = next((_BY[c.method] for c in (server.checks if server else ()) if passes(c, sender)), "")
    own: tuple[Check, ...] = ()
    if not by and lookup is not None:
        own = verify_dkim(data, lookup)
        evidence["dkim"] = [check.as_evidence() for check in own]
        by = BY_OWN_DKIM if any(passes(check, sender) for check in own) else ""
    if by:
        return Verdict(True, sender.mailbox, "", {**evidence, "authenticated_by": by})
    reason = _why_not(sender, read, server, own if lookup is not None else None, trusted)
    return Verdict(False, sender.mailbox, reason, evidence)


def _why_not(
    sender: Sender,
    read: Sequence[ServerHeader],
    server: ServerHeader | None,
    own: Sequence[Check] | None,
    trusted: frozenset[str],
) -> str:
    others = sorted({header.authserv_id for header in read if header.authserv_id})
    if not trusted:
        parts = ["geen vertrouwde mailserver ingesteld (INVITES_REPLY_AUTHSERV_IDS)"]
    elif server is None:
        parts = ["geen Authentication-Results van de eigen mailserver"]
        if others:
            parts[0] += f" (wel van {', '.join(others)})"
    elif not server.readable:
        parts = [f"de Authentication-Results van de eigen mailserver ({server.authserv_id}) is onleesbaar"]
    else:
        said = ", ".join(_said(check) for check in server.checks)
        parts = [f"de eigen mailserver ({server.authserv_id}) meldt {said or 'geen DMARC of DKIM'}"]
    if own is not None:
        signed = ", ".join(f"{check.domain or '?'}: {check.result}" for check in own)
        parts.append(
            f"geen geldige DKIM-handtekening van {sender.domain}" + (f" ({signed})" if signed else "")
        )
    return f"{NOT_VERIFIED}: " + "; ".join(parts)


def _said(check: Check) -> str:
    return f"{check.method}={check.result}" + (f" ({check.domain})" if check.domain else "")


def nameserver(setting: str) -> tuple[str, int]:
    """The host and port of INVITES_DNS_RESOLVER: "host", "host:port", "[v6]:port" or a bare IPv6 address."""
    text = setting.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host or (port and not port.isdigit()) or not 0 < int(port or 53) < 65536:
        raise ValueError(f"INVITES_DNS_RESOLVER {setting!r} must be host or host:port")
    return host, int(port or 53)


def dns_lookup(setting: str) -> TxtLookup:
    """The DKIM check's DNS lookup, through the resolver INVITES_DNS_RESOLVER names; the system's when empty.
    A host name in the setting is resolved here, once."""
    resolver = dns.resolver.Resolver(configure=not setting.strip())
    if setting.strip():
        host, port = nameserver(setting)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            host = str(socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][4][0])
        resolver.nameservers = [host]
        resolver.port = port

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode("ascii"), "TXT", lifetime=timeout, search=False)
        except (UnicodeDecodeError, dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return None
        except dns.exception.Timeout as exc:
            # dkimpy reports this as a temporary failure of that signature, not a broken message.
            raise dkim.DnsTimeoutError(str(exc)) from exc
        for record in answer:
            return b"".join(getattr(record, "strings", ()))
        return None

    return lookup
