"""The Celery processes the CLI starts: `celery -A workers …`, by module name, so that nothing in invites/
imports the workers (they import the composition root, invites.runtime, instead)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def celery_command(*arguments: str) -> list[str]:
    """The command line of `celery -A workers …` in this interpreter."""
    return [sys.executable, "-m", "celery", "-A", "workers", *arguments]


def worker_command(*options: str) -> list[str]:
    """The command line of a real Celery worker, as `celery -A workers worker` starts it."""
    return celery_command("worker", "--without-mingle", "--without-gossip", *options)


def exec_celery(*arguments: str) -> None:
    """Become `celery -A workers …`: the process keeps its pid, so a supervisor's signals reach Celery."""
    sys.stdout.flush()
    sys.stderr.flush()
    command = celery_command(*arguments)
    os.execv(command[0], command)


def start_worker(env: dict[str, str], concurrency: int = 2) -> subprocess.Popen[bytes]:
    # No cwd of its own: the worker imports `workers` from wherever it is installed (site-packages, or the
    # source tree for the editable install), and shares the demo's working directory, so that a relative
    # INVITES_VAR_DIR means the same folder in both processes.
    return subprocess.Popen(
        worker_command(f"--concurrency={concurrency}", "--loglevel=WARNING"),
        env=env,
    )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
