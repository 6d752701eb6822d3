"""Reading a mailbox over IMAP: the bounce mailbox, and the organiser's inbox for calendar replies."""

from __future__ import annotations

import imaplib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class ImapTarget:
    host: str
    port: int
    tls: bool
    username: str
    password: str
    mailbox: str

    @classmethod
    def parse(cls, url: str, setting: str = "the IMAP URL") -> ImapTarget:
        """imaps://user:password@host[:port]/MAILBOX (imap:// for plain, with STARTTLS when offered)."""
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps") or not parts.hostname:
            raise ValueError(f"{setting} {url!r} must look like imaps://user:pass@host/INBOX")
        tls = parts.scheme == "imaps"
        return cls(
            host=parts.hostname,
            port=parts.port or (993 if tls else 143),
            tls=tls,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            mailbox=unquote(parts.path.lstrip("/")) or "INBOX",
        )


def poll_imap(target: ImapTarget, handle: Callable[[bytes], bool], limit: int = 500) -> int:
    """Read the unseen messages of a mailbox; delete each one `handle` used, and leave anything else marked
    as seen for a person to read. Returns how many messages were read."""
    client: imaplib.IMAP4 = (
        imaplib.IMAP4_SSL(target.host, target.port) if target.tls else imaplib.IMAP4(target.host, target.port)
    )
    try:
        if not target.tls and "STARTTLS" in client.capabilities:
            client.starttls()
        client.login(target.username, target.password)
        client.select(target.mailbox)
        _, found = client.uid("SEARCH", "UNSEEN")
        uids = [uid.decode() for uid in (found[0] or b"").split()[:limit]]
        for uid in uids:
            _, fetched = client.uid("FETCH", uid, "(BODY.PEEK[])")
            data = next((item[1] for item in fetched if isinstance(item, tuple)), b"")
            flag = "(\\Deleted)" if handle(bytes(data)) else "(\\Seen)"
            client.uid("STORE", uid, "+FLAGS", flag)
        if uids:
            client.expunge()
    except BaseException:
        client.shutdown()
        raise
    client.logout()
    return len(uids)
