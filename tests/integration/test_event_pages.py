"""The organiser pages that make and change events and upload their lists, through a real server, with a
signed-in browser session, a real database and (for the import) a real worker."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import httpx
from sqlalchemy import func, select

from invites import db
from invites.db.models import Event, ImportJob, Invitation
from invites.domain.eventfile import parse_event_file
from invites.services.events import get_event, load_event
from tests.conftest import EVENT_FILE, NOW, sign_in, wait_until

SLUG = "lokaal-samenspel-2018"
FORM = {
    "source": "form",
    "title": "Raadsavond Zeist <wonen & zorg>",
    "slug": "",
    "date": "2025-03-04",
    "start": "19:30",
    "end": "21:45",
    "timezone": "Europe/Amsterdam",
    "language": "nl",
    "venue_name": "Gemeentehuis",
    "venue_address": "Het Rond 1",
    "venue_postcode": "3701 HS",
    "venue_city": "Zeist",
    "description": "Over wonen en zorg in Zeist.",
    "organiser_name": "Griffie Zeist",
    "organiser_email": "griffie@example.nl",
    "capacity": "80",
    "rsvp_deadline": "2025-03-01T12:00",
}


class Form(HTMLParser):
    """The fields of the forms on a page as a browser would send them: name -> value, per form action."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self._textarea: str | None = None
        self._select: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.forms.append((found.get("action", ""), {}))
        elif tag == "input" and found.get("name") and found.get("type") not in ("file", "checkbox"):
            self.forms[-1][1][found["name"]] = found.get("value", "")
        elif tag == "textarea":
            self._textarea = found["name"]
            self.forms[-1][1][found["name"]] = ""
        elif tag == "select":
            self._select = found["name"]
        elif tag == "option" and self._select and "selected" in found:
            self.forms[-1][1][self._select] = found["value"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.forms[-1][1][self._textarea] += data

    def fields(self, source: str) -> dict[str, str]:
        return next(fields for _, fields in self.forms if fields.get("source") == source)


def csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found[1]


@contextmanager
def signed_in(web: str, organiser: Any) -> Iterator[httpx.Client]:
    """A browser session, signed in through the real form."""
    with httpx.Client(base_url=web, timeout=30) as client:
        sign_in(client, organiser)
        yield client


def load_example(runtime: Any) -> None:
    with db.transaction(runtime.sessions) as session:
        load_event(session, parse_event_file(EVENT_FILE.read_bytes()), NOW)


def test_an_event_file_uploaded_on_the_page_creates_the_event(runtime: Any, web: str, organiser: Any) -> None:
    with signed_in(web, organiser) as client:
        page = client.get("/events/new")
        assert page.status_code == 200
        assert '<label class="dropzone" for="event_file">' in page.text
        token = csrf(page)
        created = client.post(
            "/events/new",
            data={"csrf_token": token, "source": "file"},
            files={"event_file": ("lokaal-samenspel-2018.toml", EVENT_FILE.read_bytes(), "application/toml")},
        )
        again = client.post(
            "/events/new",
            data={"csrf_token": token, "source": "file"},
            files={"event_file": ("lokaal-samenspel-2018.toml", EVENT_FILE.read_bytes(), "application/toml")},
        )
        broken = client.post(
            "/events/new",
            data={"csrf_token": token, "source": "file"},
            files={"event_file": ("kapot.toml", b'slug = "kapot"\ntitle = "Kapot"\n', "application/toml")},
        )
        edit = client.get(f"/events/{SLUG}/edit")

    assert created.status_code == 303, created.text
    assert created.headers["location"] == f"/events/{SLUG}"
    with runtime.sessions() as session:
        event = get_event(session, SLUG)
        assert event.title == "Inspiratiebijeenkomst Lokaal samenspel in verandering"
        assert len(event.programme) == 8 and event.series is not None and event.sequence == 0
        assert session.scalar(select(func.count()).select_from(Event)) == 1
    # Loading the same file again is what `invites event load` does: an update, with nothing for calendars.
    assert again.status_code == 303 and again.headers["location"] == f"/events/{SLUG}/edit?saved=1"
    assert broken.status_code == 400
    assert "kapot.toml: field &#39;date&#39;: is required, as YYYY-MM-DD" in broken.text
    assert edit.status_code == 200 and 'value="Fort Vreeswijk"' in edit.text


def test_an_event_made_with_the_form_is_listed(runtime: Any, web: str, organiser: Any) -> None:
    with signed_in(web, organiser) as client:
        token = csrf(client.get("/events/new"))
        created = client.post("/events/new", data={**FORM, "csrf_token": token})
        index = client.get("/")
        taken = client.post("/events/new", data={**FORM, "csrf_token": token})

    assert created.status_code == 303, created.text
    assert created.headers["location"] == "/events/raadsavond-zeist-wonen-zorg"
    assert (
        'href="/events/raadsavond-zeist-wonen-zorg">Raadsavond Zeist &lt;wonen &amp; zorg&gt;</a>'
        in index.text
    )
    with runtime.sessions() as session:
        event = get_event(session, "raadsavond-zeist-wonen-zorg")
        assert event.starts_at == datetime(2025, 3, 4, 18, 30, tzinfo=UTC)
        assert (event.venue_city, event.capacity, event.organiser_email) == (
            "Zeist",
            80,
            "griffie@example.nl",
        )
        assert event.rsvp_deadline == datetime(2025, 3, 1, 11, 0, tzinfo=UTC)
    assert taken.status_code == 400, "the form never overwrites another event"
    assert (
        "field &#39;slug&#39;: an event with slug &#39;raadsavond-zeist-wonen-zorg&#39; already exists"
        in taken.text
    )


def test_a_form_error_names_the_field_and_keeps_what_was_typed(
    runtime: Any, web: str, organiser: Any
) -> None:
    with signed_in(web, organiser) as client:
        token = csrf(client.get("/events/new"))
        response = client.post("/events/new", data={**FORM, "end": "19:00", "csrf_token": token})

    assert response.status_code == 400
    assert "field &#39;end&#39;: 19:00 is not after the start 19:30" in response.text
    assert '<a href="#f-end">Eindtijd</a>' in response.text
    field = re.search(r'<input id="f-end" name="end"[^>]*>', response.text)
    assert field and 'value="19:00"' in field[0], "kept as typed"
    assert 'aria-invalid="true"' in field[0] and 'aria-describedby="f-end-error"' in field[0]
    typed = Form(response.text).fields("form")
    assert typed["title"] == FORM["title"], "kept, and escaped in the page"
    assert typed["venue_name"] == "Gemeentehuis" and typed["capacity"] == "80"
    assert typed["description"] == "Over wonen en zorg in Zeist."
    assert "<wonen" not in response.text
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0


def test_editing_the_start_time_raises_the_sequence_and_says_so(
    runtime: Any, web: str, organiser: Any
) -> None:
    load_example(runtime)
    with signed_in(web, organiser) as client:
        page = client.get(f"/events/{SLUG}/edit")
        assert page.status_code == 200
        shown = Form(page.text).fields("form")
        assert (shown["date"], shown["start"], shown["end"]) == ("2018-02-13", "19:30", "22:00")
        moved = client.post(f"/events/{SLUG}/edit", data={**shown, "start": "20:00"})
        notice = client.get(moved.headers["location"])
        wording = client.post(
            f"/events/{SLUG}/edit", data={**Form(notice.text).fields("form"), "title": "Lokaal samenspel"}
        )
        quiet = client.get(wording.headers["location"])

    assert moved.status_code == 303, moved.text
    assert moved.headers["location"] == f"/events/{SLUG}/edit?saved=1&changed=starts_at"
    assert "De wijzigingen zijn opgeslagen." in notice.text
    assert "Agenda&#39;s krijgen een wijziging:</strong> tijd." in notice.text
    assert "(SEQUENCE) is nu 1." in notice.text
    assert 'value="20:00"' in notice.text
    assert wording.headers["location"] == f"/events/{SLUG}/edit?saved=1"
    assert "De wijzigingen zijn opgeslagen." in quiet.text and "krijgen een wijziging" not in quiet.text
    with runtime.sessions() as session:
        event = get_event(session, SLUG)
        assert event.sequence == 1 and event.changed_fields == ["starts_at"]
        assert event.starts_at == datetime(2018, 2, 13, 19, 0, tzinfo=UTC)
        assert event.title == "Lokaal samenspel"
        assert len(event.programme) == 8 and event.series is not None, "what the form does not show is kept"
        assert event.registration_enabled and event.venue_lat == 52.0072


def test_a_new_version_of_the_file_is_loaded_on_the_edit_page(runtime: Any, web: str, organiser: Any) -> None:
    load_example(runtime)
    elsewhere = EVENT_FILE.read_bytes().replace(b'name = "Fort Vreeswijk"', b'name = "Stadhuis Nieuwegein"')
    other = EVENT_FILE.read_bytes().replace(f'slug = "{SLUG}"'.encode(), b'slug = "iets-anders"')
    with signed_in(web, organiser) as client:
        token = csrf(client.get(f"/events/{SLUG}/edit"))
        loaded = client.post(
            f"/events/{SLUG}/edit",
            data={"csrf_token": token, "source": "file"},
            files={"event_file": ("nieuw.toml", elsewhere, "application/toml")},
        )
        refused = client.post(
            f"/events/{SLUG}/edit",
            data={"csrf_token": token, "source": "file"},
            files={"event_file": ("ander.toml", other, "application/toml")},
        )

    assert loaded.status_code == 303
    assert loaded.headers["location"] == f"/events/{SLUG}/edit?saved=1&changed=venue_name"
    assert refused.status_code == 400
    assert (
        "ander.toml: this file is for the event &#39;iets-anders&#39;, not &#39;lokaal-samenspel-2018&#39;"
        in refused.text
    )
    with runtime.sessions() as session:
        assert get_event(session, SLUG).venue_name == "Stadhuis Nieuwegein"
        assert session.scalar(select(func.count()).select_from(Event)) == 1


LIST = (
    "e-mail,naam,functie\n"
    "anne@example.org,Anne de Vries,burgemeester\n"
    "kees@,Kees Jansen,raadslid\n"
    ",Piet Bakker,raadslid\n"
    "joop@example.nl,Joop Smit,wethouder\n"
)


def test_an_uploaded_list_is_imported_by_a_worker_and_its_report_shown(
    runtime: Any, web: str, organiser: Any, start_worker: Any
) -> None:
    load_example(runtime)
    start_worker()
    with signed_in(web, organiser) as client:
        page = client.get(f"/events/{SLUG}/upload")
        assert page.status_code == 200
        assert '<label class="dropzone" for="file">' in page.text and 'name="strict"' in page.text
        uploaded = client.post(
            f"/events/{SLUG}/upload",
            data={"csrf_token": csrf(page), "sheet": ""},
            files={"file": ("genodigden.csv", LIST.encode(), "text/csv")},
        )
        assert uploaded.status_code == 303, uploaded.text
        url = uploaded.headers["location"]
        assert re.fullmatch(rf"/events/{SLUG}/imports/\d+", url)
        first = client.get(url)
        assert first.status_code == 200
        assert "Import van genodigden.csv" in first.text
        if "data-poll" in first.text:
            assert (
                f'data-poll="{url}/progress"' in first.text
                and f'<a href="{url}">Vernieuwen</a>' in first.text
            )
        fragment = wait_until(
            lambda: (
                (r := client.get(f"{url}/progress")).status_code == 200 and "data-poll" not in r.text and r
            ),
            timeout=60,
            what="the worker to finish the import",
        )
        report = client.get(url)
        strict = client.post(
            f"/events/{SLUG}/upload",
            data={"csrf_token": csrf(page), "strict": "1"},
            files={"file": ("streng.csv", LIST.encode(), "text/csv")},
        )
        failed = wait_until(
            lambda: "data-poll" not in (r := client.get(strict.headers["location"])).text and r,
            timeout=60,
            what="the worker to refuse the strict import",
        )
        listing = client.get(f"/events/{SLUG}/upload")

    assert "<html" not in fragment.text, "the fragment is only the live part"
    counts = dict(re.findall(r'data-count="(\w+)">(\d+)<', report.text))
    assert counts == {
        "rows": "4",
        "accepted": "2",
        "updated": "0",
        "duplicates": "0",
        "suppressed": "0",
        "rejected": "2",
    }
    rows = re.findall(r'<tr><td class="num">(\d+)</td><td>([^<]*)</td><td>([^<]*)</td></tr>', report.text)
    assert rows[0][:2] == ("3", "e-mail") and "&#39;kees@&#39; is not a valid address" in rows[0][2]
    assert rows[1] == ("4", "e-mail", "no e-mail address")
    assert "De import is mislukt; er is niets opgeslagen." in failed.text
    assert (
        "streng.csv: 2 rows rejected, so nothing was imported (first: line 3, column &#39;e-mail&#39;:"
        in failed.text
    )
    assert f'href="{url}">genodigden.csv</a>' in listing.text
    assert re.search(
        r"streng\.csv</a></td><td>[^<]+</td><td><span class=\"status-failed\">Mislukt</span>", listing.text
    )
    with runtime.sessions() as session:
        event = get_event(session, SLUG)
        assert session.scalar(select(func.count()).where(Invitation.event_id == event.id)) == 2


def test_a_list_that_cannot_be_read_is_refused_on_the_upload_page(
    runtime: Any, web: str, organiser: Any, settings: Any
) -> None:
    load_example(runtime)
    runtime.settings.import_max_bytes = 1000
    with signed_in(web, organiser) as client:
        token = csrf(client.get(f"/events/{SLUG}/upload"))

        def upload(name: str, data: bytes, **form: str) -> httpx.Response:
            return client.post(
                f"/events/{SLUG}/upload",
                data={"csrf_token": token, **form},
                files={"file": (name, data, "application/octet-stream")},
            )

        pdf = upload("lijst.pdf", b"%PDF-1.4\n")
        big = upload("groot.csv", b"email\n" + b"a" * 5000, strict="1")
        headless = upload("namen.csv", b"naam\nAnne\n")
        nothing = client.post(
            f"/events/{SLUG}/upload", data={"csrf_token": token}, files={"file": ("", b"", "text/csv")}
        )

    assert pdf.status_code == 400
    assert "lijst.pdf: unsupported file type &#39;.pdf&#39;: use .csv or .xlsx" in pdf.text
    assert big.status_code == 400
    assert "groot.csv: the file is over the limit of 1,000 bytes" in big.text
    assert re.search(r'<input id="strict" name="strict" type="checkbox" value="1" checked>', big.text), "kept"
    assert headless.status_code == 400
    assert "namen.csv: no e-mail column: the header has &#39;naam&#39;" in headless.text
    assert nothing.status_code == 400 and "Kies een bestand met de lijst" in nothing.text
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ImportJob)) == 0
    assert not list((settings.var_dir / "imports").glob("*")), "no upload is left behind"


def test_posts_without_the_csrf_token_are_refused(runtime: Any, web: str, organiser: Any) -> None:
    load_example(runtime)
    with signed_in(web, organiser) as client:
        new = client.post("/events/new", data=FORM)
        edit = client.post(f"/events/{SLUG}/edit", data={**FORM, "csrf_token": "wrong"})
        # Without a file: a refused multipart body is left for the garbage collector by the CSRF check.
        upload = client.post(f"/events/{SLUG}/upload", data={"strict": "1", "sheet": ""})

    assert (new.status_code, edit.status_code, upload.status_code) == (403, 403, 403)
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 1
        assert get_event(session, SLUG).title != FORM["title"]
        assert session.scalar(select(func.count()).select_from(ImportJob)) == 0


def test_signed_out_visitors_are_sent_to_sign_in(runtime: Any, web: str, organiser: Any) -> None:
    load_example(runtime)
    with httpx.Client(base_url=web) as client:
        for path in (
            "/events/new",
            f"/events/{SLUG}/edit",
            f"/events/{SLUG}/upload",
            f"/events/{SLUG}/imports/1",
        ):
            response = client.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login?next=%2Fevents%2F"), path
        assert client.post("/events/new", data=FORM).status_code == 303
    with signed_in(web, organiser) as client:
        assert client.get("/events/nope/edit").status_code == 404
        assert client.get("/events/nope/upload").status_code == 404
        assert client.get(f"/events/{SLUG}/imports/999").status_code == 404
