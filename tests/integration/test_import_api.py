"""The audience API: a list uploaded over HTTP is imported by a real worker, and its report is read back."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import AUDIENCE_FILE, EVENT_FILE, run_cli, wait_until

SLUG = "lokaal-samenspel-2018"


def test_an_upload_is_imported_by_a_worker_and_reported(
    runtime: Any, settings: Any, web: str, start_worker: Any, organiser: Any
) -> None:
    run_cli(settings, "event", "load", str(EVENT_FILE))
    start_worker()
    with httpx.Client(base_url=web, timeout=30, headers=organiser.headers) as client:
        upload = client.post(
            f"/api/v1/events/{SLUG}/imports",
            files={"file": ("audience-utrecht.csv", AUDIENCE_FILE.read_bytes(), "text/csv")},
        )
        assert upload.status_code == 202
        url = upload.json()["url"]
        assert upload.headers["location"] == url

        done = wait_until(lambda: (r := client.get(url).json())["status"] == "done" and r, timeout=60)
        assert done["report"]["accepted"] == 156 and done["report"]["rejected"] == []

        bad = client.post(
            f"/api/v1/events/{SLUG}/imports", files={"file": ("x.csv", b"naam\nAnne\n", "text/csv")}
        )
        # Refused at once, as the web page's upload is: the same use case (imports.submit_import).
        assert bad.status_code == 400, bad.text
        assert bad.json()["detail"] == "x.csv: no e-mail column: the header has 'naam'"

        matrix = client.get(f"/api/v1/events/{SLUG}/audience", params={"role": "burgemeester"}).json()
        assert matrix["totals"]["all"]["invited"] == 26
        assert client.get(f"/api/v1/events/{SLUG}/audience", params={"role": "keizer"}).status_code == 400
        export = client.get(f"/api/v1/events/{SLUG}/export.csv", params={"municipality": "GM0344"})
        assert export.status_code == 200 and export.text.count("\r\n") == 7
        assert client.get("/api/v1/events/nope/audience").status_code == 404
        assert client.get("/api/v1/imports/999999").status_code == 404


def test_an_upload_over_the_limit_is_refused(runtime: Any, settings: Any, web: str, organiser: Any) -> None:
    run_cli(settings, "event", "load", str(EVENT_FILE))
    runtime.settings.import_max_bytes = 1000
    with httpx.Client(base_url=web, headers=organiser.headers) as client:
        response = client.post(
            f"/api/v1/events/{SLUG}/imports",
            files={"file": ("big.csv", b"email\n" + b"a" * 5000, "text/csv")},
        )
    assert response.status_code == 413
    assert "over the limit of 1,000 bytes" in response.json()["detail"]
    assert not list((settings.var_dir / "imports").glob("*")), "the partial upload is removed"
