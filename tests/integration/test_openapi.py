"""The JSON API keeps the promises of its OpenAPI schema: schemathesis generates requests for every /api/v1
operation and sends them to the served app, with an organiser's token, against an event with a small
audience. No answer may be a server error, and every status code, content type and body must be one the
schema describes. It runs on SQLite and on PostgreSQL, which refuses NUL characters in text: the schema
forbids them, so FastAPI refuses them before any query."""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from invites import db
from invites.domain.eventfile import parse_event_file
from invites.runtime import Runtime
from invites.services.events import load_event
from invites.services.imports import import_list
from invites.web.app import create_app
from tests.conftest import AUDIENCE_FILE, EVENT_FILE, NOW, serve

SLUG = "lokaal-samenspel-2018"
# A second event, for the cancel operation: cancelling the first would turn every later answer into a 400.
DOOMED = "afgelast-2018"
ADDRESS = "stijn.berg@amersfoort.example.nl"
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
# Examples per operation: enough to find the 5xx and schema gaps, few enough to stay well under a minute.
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 6}


@pytest.fixture
def api_schema(web: str, runtime: Any) -> Any:
    """The served app's schema, its operations under /api/v1 only, with the example event loaded."""
    audience = b"\n".join(AUDIENCE_FILE.read_bytes().splitlines()[:11])
    text = EVENT_FILE.read_bytes()
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(text), NOW).event
        assert import_list(session, event, audience, AUDIENCE_FILE.name, NOW).accepted == 10
        other = parse_event_file(text.replace(f'slug = "{SLUG}"'.encode(), f'slug = "{DOOMED}"'.encode()))
        load_event(session, other, NOW)
    return schemathesis.openapi.from_url(f"{web}/openapi.json").include(path_regex=r"^/api/v1/")


def test_the_api_answers_as_its_schema_says(api_schema: Any, web: str, organiser: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 17, [operation.label for operation in operations]
    failures: list[str] = []
    for mode, operation in itertools.product(EXAMPLES, operations):
        # Real names in the path, so requests reach the services instead of stopping at a 404.
        names = {"slug": DOOMED if operation.path.endswith("/cancel") else SLUG, "email": ADDRESS}
        fixed = {name: value for name, value in names.items() if "{" + name + "}" in operation.path}

        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
        @settings(
            max_examples=EXAMPLES[mode],
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def answers(case: Any) -> None:
            case.call_and_validate(base_url=web, headers=organiser.headers, checks=CHECKS)

        try:
            answers()
        except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis reports a group of failures
            failures.append(f"{mode.value} {operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


@pytest.fixture
def docs_web(runtime: Any) -> Iterator[str]:
    """The app with Swagger UI switched on, as INVITES_API_DOCS=true does in development."""
    runtime.settings.api_docs = True
    with serve(create_app(runtime)) as url:
        yield url


def test_the_docs_and_the_schema_load(docs_web: str) -> None:
    with httpx.Client(base_url=docs_web, timeout=30) as client:
        docs = client.get("/docs")
        described = client.get("/openapi.json")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    # Swagger UI runs under a policy of its own: its CDN, and its inline script by hash, never unsafe-inline.
    [script] = re.findall(r"<script>(.*?)</script>", docs.text, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = docs.headers["content-security-policy"]
    script_src = next(part for part in policy.split(";") if part.strip().startswith("script-src"))
    assert f"'sha256-{digest}'" in script_src and "'unsafe-inline'" not in script_src
    assert described.status_code == 200
    paths = described.json()["paths"]
    assert {"/api/v1/events", "/api/v1/events/{slug}", "/api/v1/events/{slug}/rsvps/{email}"} <= set(paths)
    assert set(paths["/api/v1/events"]["post"]["requestBody"]["content"]) == {
        "application/toml",
        "text/plain",
    }
    exports = paths["/api/v1/events/{slug}/export.{fmt}"]["get"]["responses"]["200"]["content"]
    assert "text/csv; charset=utf-8" in exports
    for path, operations in paths.items():
        if path.startswith("/api/v1/"):
            for method, operation in operations.items():
                assert "401" in operation["responses"], f"{method} {path} does not document 401"


def test_the_docs_are_off_unless_asked_for_and_always_in_production(web: str, settings: Any) -> None:
    # Swagger UI runs a script from a CDN on the app's origin: not without INVITES_API_DOCS=true.
    with httpx.Client(base_url=web, timeout=30) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/openapi.json").status_code == 200
    production = settings.model_copy(
        update={
            "env": "production",
            "api_docs": True,
            "secret_key": "x" * 40,
            "base_url": "https://example.org",
        }
    )
    runtime = Runtime(production)
    try:
        with serve(create_app(runtime)) as url, httpx.Client(base_url=url, timeout=30) as client:
            docs = client.get("/docs", headers={"Accept": "text/html"})
            described = client.get("/openapi.json")
    finally:
        runtime.engine.dispose()
    assert docs.status_code == 404 and "cdn.jsdelivr.net" not in docs.text
    assert described.status_code == 200 and "/api/v1/events" in described.json()["paths"]
