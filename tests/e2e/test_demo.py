"""The README's first command, as a newcomer runs it: embedded Redis, a real worker, the local sink."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from pathlib import Path

from invites.adapters import embedded
from invites.adapters.sink import stored_messages
from tests.conftest import ROOT
from tests.e2e.test_walking_skeleton import audience_addresses


def can_sign_in(var_dir: Path, email: str, password: str) -> bool:
    from invites.runtime import Runtime
    from invites.services import accounts
    from invites.settings import Settings

    runtime = Runtime(Settings(var_dir=var_dir))
    with runtime.sessions() as session:
        signed_in = accounts.authenticate(session, email, password, datetime.now(UTC)) is not None
    runtime.engine.dispose()
    return signed_in


def test_demo_once_delivers_exactly_one_invitation_per_recipient(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVITES_")}
    env["INVITES_VAR_DIR"] = str(tmp_path / "var")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "invites.cli.main", "demo", "--once"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "delivered: 156 sent, 0 failed, of 156" in result.stdout
        assert "/r/" in result.stdout and "/outbox" in result.stdout
        signed = re.search(r"/login as (\S+) with password (\S+)", result.stdout)
        assert signed, result.stdout
        assert can_sign_in(tmp_path / "var", signed[1], signed[2])

        outbox = tmp_path / "var" / "outbox"
        files = stored_messages(outbox)
        recipients = sorted(
            message_from_bytes(path.read_bytes(), policy=default)["To"].addresses[0].addr_spec.lower()
            for path in files
        )
        assert recipients == sorted(audience_addresses())

        again = subprocess.run(
            [sys.executable, "-m", "invites.cli.main", "demo", "--once"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert again.returncode == 0, again.stderr[-3000:]
        assert len(stored_messages(outbox)) == 156, "running the demo again sends nobody a second invitation"
        again_signed = re.search(r"/login as (\S+) with password (\S+)", again.stdout)
        assert again_signed and again_signed[2] != signed[2], "each run prints a fresh password"
        assert can_sign_in(tmp_path / "var", signed[1], again_signed[2])
        assert not can_sign_in(tmp_path / "var", signed[1], signed[2])
    finally:
        embedded.stop(tmp_path / "var")
