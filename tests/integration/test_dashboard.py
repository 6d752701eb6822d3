"""The organiser's overview, segment chooser and attendee list, served by a real uvicorn over real HTTP,
against SQLite and PostgreSQL, with answers recorded and messages delivered by the real services."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from invites import db
from invites.adapters.mailer import SmtpMailer
from invites.adapters.sink import StoreHandler, free_port
from invites.db.models import Invitation, OutboundMessage, Recipient
from invites.db.segments import coverage
from invites.domain.eventfile import parse_event_file
from invites.domain.segment import Segment
from invites.domain.states import Answer, AnswerSource
from invites.services import campaigns
from invites.services.delivery import deliver_batch
from invites.services.events import get_event, load_event
from invites.services.imports import import_list
from invites.services.rsvp import log_open, record_answer
from invites.settings import SmtpTarget
from tests.conftest import AUDIENCE_FILE, EVENT_FILE, NOW, sign_in

SLUG = "lokaal-samenspel-2018"
SVG = "{http://www.w3.org/2000/svg}"
EVIL = '<script>alert("x")</script>'
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel link scanner)"


def load(runtime: Any) -> None:
    """The example event and the example audience of 156 people."""
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(EVENT_FILE.read_bytes(), str(EVENT_FILE)), NOW).event
        assert (
            import_list(session, event, AUDIENCE_FILE.read_bytes(), AUDIENCE_FILE.name, NOW).accepted == 156
        )


def answer(runtime: Any, address: str, given: Answer, days: int) -> None:
    """Record an answer through the RSVP service, `days` after NOW."""
    with db.transaction(runtime.sessions) as session:
        invitation = session.scalars(
            select(Invitation).join(Recipient).where(Recipient.email_key == address)
        ).one()
        record_answer(session, invitation, given, AnswerSource.WEB, NOW + timedelta(days=days))


def addresses(municipality: str) -> list[str]:
    rows = AUDIENCE_FILE.read_text(encoding="utf-8").splitlines()[1:]
    return [row.split(",")[0] for row in rows if row.split(",")[-1] == municipality]


@dataclass
class Cell:
    tag: str
    classes: list[str]
    text: str = ""


class Html(HTMLParser):
    """What the tests read of a page: data-count values, the heat map's rows, links and checked boxes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.counts: dict[str, str] = {}
        self.heat: list[list[Cell]] = []
        self.links: dict[str, str] = {}
        self.checked: list[tuple[str, str]] = []
        self.polls: list[str] = []
        self._count: str | None = None
        self._in_heat = False
        self._cell: Cell | None = None
        self._link: str | None = None
        self._link_text = ""
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {key: value or "" for key, value in attrs}
        classes = found.get("class", "").split()
        if found.get("data-count"):
            self._count = found["data-count"]
        if found.get("data-poll"):
            self.polls.append(found["data-poll"])
        if tag == "table" and "heat" in classes:
            self._in_heat = True
        elif self._in_heat and tag == "tr":
            self.heat.append([])
        elif self._in_heat and tag in ("th", "td"):
            self._cell = Cell(tag, classes)
        elif tag == "a":
            self._link, self._link_text = found.get("href", ""), ""
        elif tag == "input" and "checked" in found:
            self.checked.append((found["name"], found["value"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_heat = False
        elif tag in ("th", "td") and self._cell is not None:
            self._cell.text = " ".join(self._cell.text.split())
            self.heat[-1].append(self._cell)
            self._cell = None
        elif tag == "a" and self._link is not None:
            self.links[" ".join(self._link_text.split())] = self._link
            self._link = None

    def handle_data(self, data: str) -> None:
        if self._count:
            self.counts[self._count] = data.strip()
            self._count = None
        if self._cell is not None:
            self._cell.text += data
        if self._link is not None:
            self._link_text += data

    def heat_row(self, name: str) -> list[Cell]:
        return next(row for row in self.heat if row and row[0].text.startswith(name))


def chart(text: str) -> ET.Element:
    """The inline SVG of the page, parsed as XML: it must be well-formed."""
    found = re.search(r"<svg\b.*?</svg>", text, re.S)
    assert found, "no inline <svg> on the page"
    return ET.fromstring(found[0])


@pytest.fixture
def client(web: str, organiser: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web) as signed_in:
        sign_in(signed_in, organiser)
        yield signed_in


def test_the_overview_counts_the_answers_and_draws_them_by_day(runtime: Any, client: httpx.Client) -> None:
    load(runtime)
    amersfoort = addresses("Amersfoort")
    answer(runtime, amersfoort[0], Answer.ACCEPTED, days=1)
    answer(runtime, amersfoort[1], Answer.ACCEPTED, days=3)
    answer(runtime, amersfoort[2], Answer.DECLINED, days=3)
    answer(runtime, amersfoort[3], Answer.TENTATIVE, days=3)

    page = client.get(f"/events/{SLUG}")
    assert page.status_code == 200
    html = Html(page.text)
    assert html.counts == {
        "invited": "156",
        "sent": "0",
        "queued": "0",
        "deferred": "0",
        "failed": "0",
        "accepted": "2",
        "tentative": "1",
        "declined": "1",
        "no_answer": "152",
    }
    assert html.polls == [f"/events/{SLUG}/counts"]

    svg = chart(page.text)
    assert svg.get("role") == "img" and svg.get("aria-labelledby")
    assert svg.findtext(f"{SVG}title") == "Antwoorden per dag"
    assert "2 komen, 1 misschien, 1 komen niet" in (svg.findtext(f"{SVG}desc") or "")
    bars = [
        (r.get("data-series"), int(r.get("data-value") or 0), float(r.get("height") or 0))
        for r in svg.iter(f"{SVG}rect")
        if r.get("data-series")
    ]
    assert [(series, value) for series, value, _ in bars] == [
        ("accepted", 1),
        ("accepted", 2),
        ("tentative", 1),
        ("declined", 1),
    ]
    assert bars[1][2] == pytest.approx(2 * bars[0][2])
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "x-tick"]
    assert labels == ["16 jan", "18 jan"]
    # The same figures as a table, for anyone who cannot see the chart.
    assert re.search(
        r"<th scope=\"row\">18 januari 2018</th><td class=\"num\">2</td>"
        r"<td class=\"num\">1</td><td class=\"num\">1</td>",
        page.text,
    )

    # The live fragment follows a new answer given through the RSVP link.
    answer(runtime, amersfoort[4], Answer.ACCEPTED, days=4)
    fragment = client.get(f"/events/{SLUG}/counts")
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    refreshed = Html(fragment.text)
    assert refreshed.counts["accepted"] == "3" and refreshed.counts["no_answer"] == "151"
    assert refreshed.polls == [f"/events/{SLUG}/counts"]


def test_an_event_without_answers_shows_an_empty_chart(runtime: Any, client: httpx.Client) -> None:
    load(runtime)
    page = client.get(f"/events/{SLUG}")
    svg = chart(page.text)
    assert not [r for r in svg.iter(f"{SVG}rect") if r.get("data-series")]
    assert "Er zijn nog geen antwoorden." in [t.text for t in svg.iter(f"{SVG}text")]


def test_the_heat_map_marks_the_municipalities_nobody_comes_from(runtime: Any, client: httpx.Client) -> None:
    load(runtime)
    for address in addresses("Amersfoort")[:2]:
        answer(runtime, address, Answer.ACCEPTED, days=1)
    answer(runtime, addresses("Baarn")[0], Answer.DECLINED, days=1)

    accepted = Html(client.get(f"/events/{SLUG}").text)
    amersfoort, baarn = accepted.heat_row("Amersfoort"), accepted.heat_row("Baarn")
    assert "none" not in amersfoort[0].classes and "nog niemand" not in amersfoort[0].text
    assert amersfoort[-1].text == "2" and "h5" in amersfoort[-1].classes
    assert "none" in baarn[0].classes and "nog niemand aangemeld" in baarn[0].text
    assert baarn[-1].text == "0" and "none" in baarn[-1].classes
    assert accepted.heat[-1][-1].text == "2"  # the totals row

    invited = Html(client.get(f"/events/{SLUG}", params={"measure": "invited"}).text)
    assert invited.heat_row("Amersfoort")[-1].text == "6"
    assert invited.heat[-1][-1].text == "156"
    declined = Html(client.get(f"/events/{SLUG}", params={"measure": "declined"}).text)
    # Nobody from Baarn is coming: still marked, though one of them answered.
    assert declined.heat_row("Baarn")[-1].text == "1"
    assert (
        "none" in declined.heat_row("Baarn")[-1].classes and "none" in declined.heat_row("Baarn")[0].classes
    )
    assert declined.links["Komt niet"].startswith("?measure=declined")


class PickyHandler(StoreHandler):
    """A real SMTP server that refuses some recipients for good and some for now."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("refuse"):
            return "550 5.1.1 mailbox unavailable"
        if address.startswith("later"):
            return "451 4.7.1 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def picky_server(tmp_path: Path) -> Iterator[Controller]:
    controller = Controller(PickyHandler(tmp_path / "picky"), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller
    controller.stop()


def test_delivery_problems_and_scanner_opens_are_listed_with_organiser_text_escaped(
    runtime: Any, client: httpx.Client, picky_server: Controller
) -> None:
    title = f"Samenspel {EVIL}"
    audience = (
        "e-mail,voornaam,achternaam,functie,gemeente\n"
        f"refuse.this@example.org,{EVIL},Weiger,raadslid,Utrecht\n"
        "later@example.org,Lotte,Later,wethouder,Zeist\n"
        "anne@example.org,Anne,Aan,burgemeester,Houten\n"
    )
    text = EVENT_FILE.read_text(encoding="utf-8").replace(
        'title = "Inspiratiebijeenkomst Lokaal samenspel in verandering"', f"title = {title!r}"
    )
    with db.transaction(runtime.sessions) as session:
        event = load_event(session, parse_event_file(text.encode(), str(EVENT_FILE)), NOW).event
        assert event.title == title
        assert import_list(session, event, audience.encode(), "people.csv", NOW).accepted == 3
    campaigns.start_campaign(runtime.sessions, SLUG, "invitation", runtime.settings, runtime.templates, NOW)
    with runtime.sessions() as session:
        ids = list(session.scalars(select(OutboundMessage.id)))
    mailer = SmtpMailer(SmtpTarget.parse(f"smtp://127.0.0.1:{picky_server.port}"))
    result = deliver_batch(runtime.sessions, ids, mailer, runtime.settings, runtime.templates, lambda: NOW)
    assert (result.sent, result.deferred, result.failed) == (1, 1, 1)

    with db.transaction(runtime.sessions) as session:
        # What the RSVP page's GET records (the page itself is rate-limited per client on a shared Redis).
        anne = session.scalars(
            select(Invitation).join(Recipient).where(Recipient.email_key == "anne@example.org")
        ).one()
        assert log_open(session, anne, SCANNER, NOW + timedelta(hours=2)).likely_scanner
        human = session.scalars(
            select(Invitation).join(Recipient).where(Recipient.email_key == "later@example.org")
        ).one()
        assert not log_open(
            session, human, "Mozilla/5.0 (X11; Linux x86_64)", NOW + timedelta(hours=3)
        ).likely_scanner

    page = client.get(f"/events/{SLUG}")
    assert page.status_code == 200
    assert EVIL not in page.text and "<script>alert" not in page.text
    assert "Samenspel &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
    counts = Html(page.text).counts
    assert (counts["sent"], counts["deferred"], counts["failed"]) == ("1", "1", "1")

    problems = page.text.split('id="problems"', 1)[1].split('id="scanners"', 1)[0]
    refused = problems.split("refuse.this@example.org", 1)
    assert len(refused) == 2, "the refused address is listed"
    row = refused[0].rsplit("<tr>", 1)[1] + refused[1].split("</tr>", 1)[0]
    assert "&lt;script&gt;" in row and "Mislukt" in row and "Uitnodiging" in row
    assert "550 5.1.1 mailbox unavailable" in row
    assert "later@example.org" in problems and "451 4.7.1 try again later" in problems
    assert "Uitgesteld" in problems
    assert "anne@example.org" not in problems

    scanners = page.text.split('id="scanners"', 1)[1]
    assert "anne@example.org" in scanners and SCANNER in scanners
    assert "later@example.org" not in scanners

    for path in ("/audience", "/attendees"):
        other = client.get(f"/events/{SLUG}{path}")
        assert other.status_code == 200, path
        assert "<script>alert" not in other.text and "&lt;script&gt;" in other.text, path


def test_the_segment_chooser_counts_the_selection_and_links_to_send(
    runtime: Any, client: httpx.Client
) -> None:
    load(runtime)
    answer(runtime, addresses("Amersfoort")[0], Answer.ACCEPTED, days=1)
    whole = Html(client.get(f"/events/{SLUG}/audience").text)
    assert whole.checked == []
    assert whole.heat[-1][-1].text == "156"

    query = {"role": ["burgemeester", "wethouder"], "municipality": ["Amersfoort", "GM0344"]}
    page = client.get(f"/events/{SLUG}/audience", params=query)
    assert page.status_code == 200
    with runtime.sessions() as session:
        expected = coverage(
            session, get_event(session, SLUG), Segment.parse(query["role"], query["municipality"])
        )["totals"]["all"]["invited"]
    assert expected > 0
    assert re.search(rf"<strong data-selected>{expected}</strong>", page.text)
    html = Html(page.text)
    assert sorted(html.checked) == [
        ("municipality", "GM0307"),
        ("municipality", "GM0344"),
        ("role", "alderman"),
        ("role", "mayor"),
    ]
    send = urlsplit(html.links["Versturen naar deze selectie"])
    assert send.path == f"/events/{SLUG}/send"
    assert parse_qs(send.query) == {"role": ["mayor", "alderman"], "municipality": ["GM0307", "GM0344"]}
    assert html.heat_row("Zeist")[-1].text == "0"
    assert html.heat_row("Amersfoort")[-1].text == "2"
    # Switching the measure keeps the segment.
    switch = parse_qs(urlsplit(html.links["Komt"]).query)
    assert switch["role"] == ["mayor", "alderman"] and switch["measure"] == ["accepted"]


def test_the_attendee_list_filters_and_links_to_the_exports(runtime: Any, client: httpx.Client) -> None:
    load(runtime)
    amersfoort, baarn = addresses("Amersfoort"), addresses("Baarn")
    answer(runtime, amersfoort[0], Answer.ACCEPTED, days=1)
    answer(runtime, baarn[0], Answer.ACCEPTED, days=2)
    answer(runtime, baarn[1], Answer.DECLINED, days=2)

    everyone = client.get(f"/events/{SLUG}/attendees")
    assert everyone.status_code == 200
    assert "156 personen" in everyone.text

    coming = client.get(f"/events/{SLUG}/attendees", params={"answer": "accepted"})
    assert "2 personen" in coming.text
    assert amersfoort[0] in coming.text and baarn[0] in coming.text and baarn[1] not in coming.text
    assert "16 jan 2018" in coming.text

    from_baarn = client.get(
        f"/events/{SLUG}/attendees", params={"answer": "accepted", "municipality": "Baarn"}
    )
    html = Html(from_baarn.text)
    assert "1 persoon<" in from_baarn.text and amersfoort[0] not in from_baarn.text
    assert html.links["Exporteren als CSV"] == f"/api/v1/events/{SLUG}/export.csv?municipality=GM0308"
    assert html.links["Exporteren als Excel"] == f"/api/v1/events/{SLUG}/export.xlsx?municipality=GM0308"
    assert html.links["Presentielijst om te printen"] == f"/events/{SLUG}/checkin"
    csv = client.get(html.links["Exporteren als CSV"])
    assert csv.status_code == 200 and baarn[0] in csv.text and amersfoort[0] not in csv.text

    silent = client.get(f"/events/{SLUG}/attendees", params={"answer": "none"})
    assert "153 personen" in silent.text and amersfoort[0] not in silent.text

    assert client.get(f"/events/{SLUG}/attendees", params={"answer": "maybe"}).status_code == 400


def test_the_pages_need_a_signed_in_organiser_and_an_existing_event(
    runtime: Any, web: str, client: httpx.Client
) -> None:
    load(runtime)
    paths = [
        f"/events/{SLUG}",
        f"/events/{SLUG}/counts",
        f"/events/{SLUG}/audience",
        f"/events/{SLUG}/attendees",
    ]
    with httpx.Client(base_url=web) as stranger:
        for path in paths:
            response = stranger.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login?next="), path
            assert SLUG not in response.text
    for path in paths:
        missing = client.get(path.replace(SLUG, "bestaat-niet"))
        assert missing.status_code == 404, path
        assert "Deze pagina bestaat niet" in missing.text, path


def test_the_pages_speak_english_when_the_organiser_chooses_it(runtime: Any, client: httpx.Client) -> None:
    load(runtime)
    answer(runtime, addresses("Amersfoort")[0], Answer.ACCEPTED, days=1)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
    assert token
    chosen = client.post("/language", data={"lang": "en", "next": "/", "csrf_token": token[1]})
    assert chosen.status_code == 303

    page = client.get(f"/events/{SLUG}")
    assert chart(page.text).findtext(f"{SVG}title") == "Answers by day"
    assert "Delivery problems" in page.text and "nobody coming yet" in page.text
    assert "Bezorgproblemen" not in page.text and "nog niemand aangemeld" not in page.text
    people = client.get(f"/events/{SLUG}/attendees")
    assert "156 people" in people.text and "Export as CSV" in people.text
    assert "Send to this segment" in client.get(f"/events/{SLUG}/audience").text
