"""A real IMAP server for the tests: Dovecot (Debian's dovecot-imapd), on a loopback port of its own.

Its mail lives in a private folder that the unprivileged `dovecot` user owns, and it stops with the test.
"""

from __future__ import annotations

import imaplib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from invites.adapters.sink import free_port

CONFIG = """
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 100
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


@dataclass(frozen=True)
class Mailbox:
    port: int
    user: str
    password: str

    @property
    def url(self) -> str:
        return (
            f"imap://{quote(self.user, safe='')}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/INBOX"
        )

    def client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port)
        client.login(self.user, self.password)
        client.select("INBOX")
        return client

    def append(self, data: bytes) -> None:
        client = self.client()
        try:
            client.append("INBOX", None, None, data)
        finally:
            client.logout()

    def messages(self) -> list[tuple[bytes, bool]]:
        """What is left in the inbox: each message with whether it is marked as read."""
        client = self.client()
        try:
            _, found = client.uid("SEARCH", "ALL")
            left = []
            for uid in (found[0] or b"").split():
                _, fetched = client.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
                head, body = next(item for item in fetched if isinstance(item, tuple))
                left.append((bytes(body), b"\\Seen" in head))
            return left
        finally:
            client.logout()


@contextmanager
def dovecot(user: str = "inbox@example.org", password: str = "secret") -> Iterator[Mailbox]:
    executable = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not Path(executable).exists():
        pytest.skip("Dovecot is not installed (Debian's dovecot-imapd; .ci/run installs it)")
    root = Path(tempfile.mkdtemp(prefix="invites-imap-"))
    root.chmod(0o755)
    port = free_port()
    (root / "passwd").write_text(f"{user}:{{PLAIN}}{password}\n")
    (root / "home").mkdir()
    shutil.chown(root / "home", "dovecot", "dovecot")
    (root / "dovecot.conf").write_text(CONFIG.format(root=root, port=port))
    server = subprocess.Popen(
        [executable, "-F", "-c", str(root / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        mailbox = Mailbox(port, user, password)
        deadline = time.monotonic() + 20
        while True:
            try:
                mailbox.client().logout()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Dovecot did not start: {(root / 'dovecot.log').read_text()}"
                    ) from None
                time.sleep(0.1)
        yield mailbox
    finally:
        server.terminate()
        server.wait(20)
        shutil.rmtree(root, ignore_errors=True)
