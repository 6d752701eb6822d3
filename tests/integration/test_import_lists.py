"""Lists as Dutch offices save them keep every name, byte for byte, through the CLI and the web upload
(with a real worker); a list of many bad lines makes a small report, and one past the limits stores
nothing."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from invites import db
from invites.db.models import ImportJob, Recipient
from invites.services.events import get_event
from invites.services.imports import import_stream, submit_import
from tests.conftest import run_cli, wait_until
from tests.integration.test_event_pages import csrf, load_example, signed_in
from tests.unit.test_audience import FORMATS, list_bytes

SLUG = "lokaal-samenspel-2018"
# How one name is written inside the file, without the file's BOM.
WRITTEN = {"cp1252": "cp1252", "utf-8-sig": "utf-8", "utf-16": "utf-16-le"}
LABELS = {
    "cp1252": "Windows-1252",
    "utf-8-sig": "UTF-8 (met BOM)",
    "utf-16": "UTF-16 (Excel “Unicode-tekst”)",
}


def exported_names(data: bytes) -> dict[str, str]:
    """The export's display names by address (a UTF-8 CSV with a BOM and semicolons)."""
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))
    return {row["email"]: row["display_name"] for row in rows}


def assert_names_kept(
    source: bytes, codec: str, exported: dict[str, str], names: list[str], prefix: str = "p"
) -> None:
    for i, name in enumerate(names):
        got = exported[f"{prefix}{i}@example.nl"]
        assert got == name
        # Byte for byte: the exported name, written back in the list's encoding, is the list's bytes.
        assert got.encode(WRITTEN[codec]) in source


def count(runtime: Any, model: Any) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_the_cli_imports_and_exports_every_name_byte_for_byte(
    runtime: Any, settings: Any, tmp_path: Path
) -> None:
    load_example(runtime)
    lists = {}
    for fmt, (_, _, encoding) in FORMATS.items():
        # Each format has its own addresses, so one export shows what each import stored.
        lists[fmt] = list_bytes(500, fmt, prefix=f"{fmt}-")
        path = tmp_path / f"lijst-{fmt}.{'txt' if fmt == 'utf-16' else 'csv'}"
        path.write_bytes(lists[fmt][0])
        imported = run_cli(settings, "import", str(path), "--event", SLUG)
        assert f"encoding: {LABELS[encoding]} (detected)" in imported.stdout, imported.stdout
        assert "500 added" in imported.stdout
    out = tmp_path / "export.csv"
    run_cli(settings, "export", SLUG, "-o", str(out))
    exported = exported_names(out.read_bytes())
    assert len(exported) == 1500
    for fmt, (source, names) in lists.items():
        assert_names_kept(source, FORMATS[fmt][0], exported, names, prefix=f"{fmt}-")
    # A list in an encoding no office saves by default is read as the organiser says.
    mac = "email;naam\r\nmac@example.nl;Zoë Thérèse Müller\r\n".encode("mac-roman")
    (tmp_path / "mac.csv").write_bytes(mac)
    chosen = run_cli(
        settings, "import", str(tmp_path / "mac.csv"), "--event", SLUG, "--encoding", "mac-roman"
    )
    assert "encoding: Mac OS Roman (chosen)" in chosen.stdout
    wrong = run_cli(
        settings, "import", str(tmp_path / "mac.csv"), "--event", SLUG, "--encoding", "utf-8", check=False
    )
    assert wrong.returncode != 0 and "niet in UTF-8 (regel 2" in wrong.stderr + wrong.stdout


def test_the_web_upload_keeps_every_name_and_says_which_encoding(
    runtime: Any, web: str, organiser: Any, start_worker: Any
) -> None:
    load_example(runtime)
    start_worker()
    with signed_in(web, organiser) as client:
        page = client.get(f"/events/{SLUG}/upload")
        assert '<select id="encoding" name="encoding">' in page.text
        assert '<option value="" selected>Automatisch</option>' in page.text

        def upload(name: str, data: bytes, encoding: str = "") -> httpx.Response:
            posted = client.post(
                f"/events/{SLUG}/upload",
                data={"csrf_token": csrf(page), "encoding": encoding},
                files={"file": (name, data, "text/csv")},
            )
            assert posted.status_code == 303, posted.text
            url = posted.headers["location"]
            return wait_until(
                lambda: "data-poll" not in (r := client.get(url)).text and r, timeout=60, what="the import"
            )

        for fmt, (codec, _, encoding) in FORMATS.items():
            source, names = list_bytes(500, fmt)
            report = upload(f"lijst-{fmt}.csv", source)
            assert f"Tekencodering: <strong>{LABELS[encoding]}</strong> (automatisch herkend)" in report.text
            export = client.get(f"/api/v1/events/{SLUG}/export.csv", headers=organiser.headers)
            exported = exported_names(export.content)
            assert len(exported) == 500
            assert_names_kept(source, codec, exported, names)
        chosen = upload("mac.csv", "email;naam\r\np0@example.nl;Zoë\r\n".encode("mac-roman"), "mac-roman")
        assert "Tekencodering: <strong>Mac OS Roman</strong> (gekozen bij het uploaden)" in chosen.text
        refused = client.post(
            f"/events/{SLUG}/upload",
            data={"csrf_token": csrf(page), "encoding": "utf-8"},
            files={"file": ("w.csv", "email;naam\r\np1@example.nl;Zoë\r\n".encode("cp1252"), "text/csv")},
        )
        assert refused.status_code == 400
        assert "niet in UTF-8 (regel 2, byte 0xeb)" in refused.text
        assert '<option value="utf-8" selected>UTF-8</option>' in refused.text, "the choice is kept"


def test_many_bad_lines_make_a_small_report_on_the_page_and_the_api(
    runtime: Any, web: str, organiser: Any
) -> None:
    load_example(runtime)
    lines = ["email;naam", "goed@example.nl;Goed"] + [f"geen-adres-{i};{'x' * 200}" for i in range(3000)]
    data = ("\r\n".join(lines) + "\r\n").encode()
    with db.transaction(runtime.sessions) as session:
        report = import_stream(
            session, get_event(session, SLUG), io.BytesIO(data), "slecht.csv", len(data), NOW_
        )
    assert report.accepted == 1 and report.rejected_count == 3000 and len(report.rejected) == 1000
    with runtime.sessions() as session:
        job = session.scalars(select(ImportJob)).one()
        stored = len(json.dumps(job.report))
        job_id = job.id
    assert job.report["rejected_count"] == 3000 and len(job.report["rejected"]) == 1000
    assert stored < 200_000, f"the stored report is {stored} bytes"
    with httpx.Client(base_url=web, headers=organiser.headers, timeout=30) as client:
        page = client.get(f"/events/{SLUG}/imports/{job_id}")
        api = client.get(f"/api/v1/imports/{job_id}")
    assert page.status_code == 200 and len(page.content) < 400_000, len(page.content)
    assert "De eerste 1000 van 3000 afgewezen rijen staan hieronder." in page.text
    assert re.search(r'data-count="rejected">3000<', page.text) and re.search(
        r'data-count="rows">3001<', page.text
    )
    assert api.status_code == 200 and len(api.content) < 200_000
    assert api.json()["report"]["rejected_count"] == 3000


def test_an_import_past_the_limits_stops_and_stores_nothing(runtime: Any, settings: Any) -> None:
    load_example(runtime)
    settings.import_max_rejections = 50
    settings.import_max_rows = 300
    queued: list[int] = []

    def run(lines: list[str]) -> dict[str, Any]:
        data = ("\r\n".join(["email;naam", *lines]) + "\r\n").encode()
        job_id = submit_import(
            runtime.sessions, settings, SLUG, io.BytesIO(data), "lijst.csv", queued.append, NOW_
        )
        return runtime.run_import(job_id, NOW_)

    bad = run([f"p{i}@example.nl;P" for i in range(40)] + [f"fout-{i};F" for i in range(60)])
    assert "meer dan 50 rijen afgewezen (INVITES_IMPORT_MAX_REJECTIONS; de eerste: regel 42" in bad["error"]
    assert "er is niets geïmporteerd" in bad["error"]
    long = run([f"p{i}@example.nl;P" for i in range(301)])
    assert "de lijst heeft meer dan 300 rijen (INVITES_IMPORT_MAX_ROWS; regel 302)" in long["error"]
    assert count(runtime, Recipient) == 0, "all or nothing"
    with runtime.sessions() as session:
        assert [j.status for j in session.scalars(select(ImportJob).order_by(ImportJob.id))] == ["failed"] * 2
    assert len(queued) == 2


NOW_ = datetime(2018, 1, 15, 9, 0, tzinfo=UTC)
