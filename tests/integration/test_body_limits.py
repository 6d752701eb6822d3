"""Request bodies are capped as they arrive (invites/web/limits.py), and the list uploads read their form only
after the token check: the attacks of issue 19 item 1, against `invites serve`'s uvicorn in a process of
its own, whose temporary files and memory are measured from /proc while the body streams in."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from invites.adapters.sink import free_port
from tests.conftest import AUDIENCE_FILE, EVENT_FILE, ROOT, keep_loopback_cookies, run_cli, settings_env

SLUG = "lokaal-samenspel-2018"
MB = 1024 * 1024
BOUNDARY = "----invites-test-boundary"
# What one process may add while refusing a body: well under the 200 MB the attack sends.
RSS_BOUND = 40 * MB
UVICORN = [sys.executable, "-m", "uvicorn", "--factory", "invites.web.app:create_app"]


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    spool: Path

    def status(self, key: str) -> int:
        """A /proc/<pid>/status figure (VmRSS, VmHWM) in bytes."""
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        found = re.search(rf"^{key}:\s+(\d+) kB", text, flags=re.M)
        assert found, text
        return int(found[1]) * 1024

    def spooled(self) -> int:
        """The bytes in the server's open temporary files, unlinked ones too (seen through its fds)."""
        total = 0
        for fd in Path(f"/proc/{self.process.pid}/fd").iterdir():
            try:
                if os.readlink(fd).startswith(str(self.spool)):
                    total += os.stat(fd).st_size
            except OSError:
                continue  # closed while we looked
        return total


@pytest.fixture
def server(runtime: Any, settings: Any, tmp_path: Path) -> Iterator[Server]:
    """`create_app` under uvicorn in a child process, with its temporary files in a folder of its own."""
    spool = tmp_path / "spool"
    spool.mkdir()
    port = free_port()
    log = (tmp_path / "uvicorn.log").open("wb")
    process = subprocess.Popen(
        [*UVICORN, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env={**settings_env(settings), "TMPDIR": str(spool)},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # the import of the app is slow on a busy machine
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "uvicorn.log").read_text()
        time.sleep(0.1)
    try:
        yield Server(url, port, process, spool)
    finally:
        process.terminate()
        process.wait(20)
        log.close()


@dataclass
class Outcome:
    status: int
    body: str
    headers: dict[str, str]
    sent: int
    seconds: float
    most_spooled: int = 0


def multipart_head(fields: dict[str, str], filename: str) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/csv\r\n\r\nemail\n"
    )
    return "".join(parts).encode()


def stream(
    srv: Server,
    path: str,
    total: int,
    headers: dict[str, str] | None = None,
    fields: dict[str, str] | None = None,
    declare_length: bool = False,
    deadline: float = 60,
) -> Outcome:
    """POST a multipart upload of `total` bytes the way an attacker would: on a raw socket, chunked unless
    `declare_length`, sending until the server answers, and reading the answer as soon as it comes."""
    lines = {
        "Host": f"127.0.0.1:{srv.port}",
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        **(headers or {}),
    }
    lines.update({"Content-Length": str(total)} if declare_length else {"Transfer-Encoding": "chunked"})
    request = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in lines.items()) + "\r\n"
    body = _framed(_pieces(multipart_head(fields or {}, "big.csv"), total), chunked=not declare_length)
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.setblocking(False)
    started = time.monotonic()
    outcome = Outcome(0, "", {}, 0, 0.0)
    pending, received, sending = request.encode(), b"", True
    try:
        while time.monotonic() - started < deadline and not _complete(received):
            readable, writable, _ = select.select([sock], [sock] if sending else [], [], 0.5)
            outcome.most_spooled = max(outcome.most_spooled, srv.spooled())
            if readable:
                chunk = _recv(sock)
                if not chunk:
                    break
                received += chunk
                sending = False  # the server has answered: the rest of the body goes nowhere
            elif writable:
                pending = pending or next(body, b"")
                try:
                    sent = sock.send(pending) if pending else 0
                except (BrokenPipeError, ConnectionResetError):
                    sent = 0
                sending = sent > 0
                outcome.sent += sent
                pending = pending[sent:]
    finally:
        sock.close()
    outcome.seconds = time.monotonic() - started
    return _parse(received, outcome)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def _parse(received: bytes, outcome: Outcome) -> Outcome:
    head_text, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head_text.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1.1 "), f"no answer after {outcome.sent:,} bytes: {received[:200]!r}"
    outcome.status = int(status_line.split()[1])
    outcome.headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    outcome.body = body.decode("utf-8", "replace")
    return outcome


def _framed(pieces: Iterator[bytes], chunked: bool) -> Iterator[bytes]:
    for piece in pieces:
        yield b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
    if chunked:
        yield b"0\r\n\r\n"


def _pieces(head: bytes, total: int) -> Iterator[bytes]:
    """The multipart body: its head, rows of addresses, and the closing boundary, `total` bytes in all."""
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    row = b"someone@example.org\n" * 3276  # 64 KiB and a bit
    filler = total - len(head) - len(tail)
    yield head
    while filler > 0:
        piece = row[: min(len(row), filler)]
        filler -= len(piece)
        yield piece
    yield tail


def _complete(received: bytes) -> bool:
    head, found, body = received.partition(b"\r\n\r\n")
    if not found:
        return False
    length = re.search(rb"\r\ncontent-length: *(\d+)", head, flags=re.I)
    return length is not None and len(body) >= int(length[1])


def test_an_upload_without_a_token_is_refused_before_its_body_is_read(
    server: Server, settings: Any, organiser: Any
) -> None:
    run_cli(settings, "event", "load", str(EVENT_FILE))
    rss_before = server.status("VmHWM")
    chunked = stream(server, f"/api/v1/events/{SLUG}/imports", 200 * MB)
    assert chunked.status == 401, chunked.body
    # The body was never read: only what sat in the socket buffers went out, nothing was spooled.
    assert chunked.most_spooled == 0
    assert chunked.sent < 20 * MB, f"{chunked.sent:,} bytes went out before the answer"
    assert chunked.seconds < 5, f"the 401 took {chunked.seconds:.1f}s"
    assert chunked.headers.get("connection") == "close"
    # Declared too large for any upload: refused before authentication, without reading a byte.
    declared = stream(server, f"/api/v1/events/{SLUG}/imports", 200 * MB, declare_length=True)
    assert declared.status == 413 and "INVITES_IMPORT_MAX_BYTES" in declared.body
    assert declared.seconds < 5 and declared.most_spooled == 0
    assert server.status("VmHWM") - rss_before < RSS_BOUND
    # The page's upload without a session: off to sign in, body unread.
    page = stream(server, f"/events/{SLUG}/upload", 200 * MB)
    assert page.status == 303 and page.headers["location"].startswith("/login")
    assert page.sent < 20 * MB and page.most_spooled == 0


def test_a_signed_in_upload_over_the_limit_stops_at_the_limit(
    server: Server, settings: Any, organiser: Any
) -> None:
    run_cli(settings, "event", "load", str(EVENT_FILE))
    limit = settings.import_max_bytes
    rss_before = server.status("VmHWM")
    over = stream(server, f"/api/v1/events/{SLUG}/imports", 200 * MB, headers=organiser.headers)
    assert over.status == 413, over.body
    assert over.body == (
        '{"detail": "the upload is over the limit of 20,971,520 bytes (INVITES_IMPORT_MAX_BYTES); '
        'split the list and upload the parts"}'
    )
    # Counted as it came: the spool stopped at the limit (and its form's 64 KiB), not at 200 MB.
    assert 0 < over.most_spooled <= limit + 64 * 1024, f"{over.most_spooled:,} bytes spooled"
    assert over.sent < limit + 20 * MB, f"{over.sent:,} bytes went out"
    assert over.seconds < 30
    assert server.status("VmHWM") - rss_before < RSS_BOUND
    wait_for_no_spool(server)

    # And a list that fits goes through the same server, whole.
    with httpx.Client(base_url=server.url, headers=organiser.headers, timeout=30) as client:
        fits = client.post(
            f"/api/v1/events/{SLUG}/imports",
            files={"file": ("audience-utrecht.csv", AUDIENCE_FILE.read_bytes(), "text/csv")},
            data={"strict": "false"},
        )
        assert fits.status_code == 202, fits.text
        assert client.get(fits.headers["location"]).json()["status"] in {"queued", "running", "done"}
        no_file = client.post(f"/api/v1/events/{SLUG}/imports", data={"strict": "true"})
        assert no_file.status_code == 400 and "'file'" in no_file.json()["detail"]
        bad_flag = client.post(
            f"/api/v1/events/{SLUG}/imports",
            files={"file": ("a.csv", b"email\na@example.org\n", "text/csv")},
            data={"strict": "misschien"},
        )
        assert bad_flag.status_code == 400 and "'strict'" in bad_flag.json()["detail"]
        unknown = client.post(
            "/api/v1/events/nope/imports", files={"file": ("a.csv", b"email\n", "text/csv")}
        )
        assert unknown.status_code == 404


def wait_for_no_spool(srv: Server) -> None:
    deadline = time.monotonic() + 10
    while srv.spooled():
        assert time.monotonic() < deadline, f"{srv.spooled():,} bytes still spooled after the 413"
        time.sleep(0.1)


def test_the_upload_page_refuses_an_oversized_list_in_dutch(
    server: Server, settings: Any, organiser: Any
) -> None:
    run_cli(settings, "event", "load", str(EVENT_FILE))
    with keep_loopback_cookies(httpx.Client(base_url=server.url, timeout=30)) as client:
        page = client.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf
        signed_in = client.post(
            "/login",
            data={
                "email": organiser.email,
                "password": organiser.password,
                "csrf_token": csrf[1],
                "next": "/",
            },
        )
        assert signed_in.status_code == 303, signed_in.text
        form = client.get(f"/events/{SLUG}/upload")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token
        cookie = f"invites_session={form.cookies['invites_session']}"
    # As a browser posts the form: the CSRF token a field of the body, which the check reads as it comes.
    over = stream(
        server,
        f"/events/{SLUG}/upload",
        200 * MB,
        headers={"Cookie": cookie, "Accept": "text/html"},
        fields={"csrf_token": token[1]},
    )
    assert over.status == 413, over.body[:500]
    assert "Dit bestand is te groot: een lijst mag ten hoogste 20,971,520 bytes zijn." in over.body
    assert over.most_spooled <= settings.import_max_bytes + 64 * 1024


def test_every_other_route_takes_a_megabyte(server: Server) -> None:
    # The sign-in form is public: its body is capped at INVITES_BODY_MAX_BYTES (and the form's 64 KiB).
    over = stream(server, "/login", 5 * MB, headers={"Accept": "application/json"})
    assert over.status == 413, over.body
    assert "over the limit of 1,048,576 bytes (INVITES_BODY_MAX_BYTES)" in over.body
    assert over.sent < 5 * MB
    with httpx.Client(base_url=server.url) as client:
        small = client.post("/login", data={"email": "x@example.org", "password": "y"})
    assert small.status_code in {400, 403}, small.text  # no CSRF token: refused by the form, not by size
