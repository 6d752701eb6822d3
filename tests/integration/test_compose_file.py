"""docker-compose.yml, checked without a Docker engine by Debian's docker-compose (as CI does): it is valid,
has every service the deployment needs, and each long-running one has a health check."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import ROOT

SERVICES = {"postgres", "redis", "migrate", "web", "worker", "beat", "mailpit", "flower"}


def compose(*args: str) -> str:
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "--profile", "ops", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def blocks(resolved: str) -> dict[str, str]:
    """The resolved file's service blocks, by name (services sit at two spaces' indent)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    inside = False
    for line in resolved.splitlines():
        if not line.startswith(" "):
            inside = line == "services:"
            current = None
        elif inside and line.startswith("  ") and not line.startswith("   ") and line.endswith(":"):
            current = found.setdefault(line.strip().rstrip(":"), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in found.items()}


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose is not installed")
def test_the_compose_file_is_valid_and_every_service_has_a_health_check() -> None:
    compose("config", "-q")
    assert set(compose("config", "--services").split()) == SERVICES
    services = blocks(compose("config"))
    assert set(services) == SERVICES
    for name, block in services.items():
        if name != "migrate":  # a one-shot: it exits when the schema is current
            assert "healthcheck:" in block, f"{name} has no health check"
    assert "service_completed_successfully" in services["web"]
    assert "container_name" not in services["worker"] and "ports:" not in services["worker"]
