"""The local SMTP sink: a real SMTP server (aiosmtpd) that stores every message as one .eml file."""

from __future__ import annotations

import os
import socket
import threading
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

_counter_lock = threading.Lock()
_counter = 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _unique_name() -> str:
    global _counter
    with _counter_lock:
        _counter += 1
        return f"{os.getpid()}-{_counter:08d}"


class StoreHandler:
    """Accepts every message and writes it, atomically, to `directory/<name>.eml`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        headers = BytesHeaderParser(policy=default).parsebytes(data)
        stem = _unique_name()
        temporary = self.directory / f".{stem}.tmp"
        temporary.write_bytes(
            # As a delivering MTA does: the envelope goes into Return-Path and Delivered-To.
            f"Return-Path: <{envelope.mail_from}>\r\n".encode()
            + "".join(f"Delivered-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos).encode()
            + data
        )
        temporary.replace(self.directory / f"{stem}.eml")
        return f"250 OK stored {headers.get('Message-ID', '')}".strip()


class Sink:
    """A running sink on 127.0.0.1; `url` is what INVITES_SMTP_URL should be to reach it."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = directory
        self.host = host
        self.port = port or free_port(host)
        self.controller = Controller(
            StoreHandler(directory), hostname=host, port=self.port, decode_data=False
        )

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> Sink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def stored_messages(directory: Path) -> list[Path]:
    """The stored messages, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(directory.glob("*.eml"), key=lambda p: (p.stat().st_mtime_ns, p.name))
