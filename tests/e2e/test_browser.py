"""The organiser's journey in a real browser: Debian's Chromium, headless, driven by Playwright.

Sign in, create the event from the example file, upload a list with bad rows and read the report, preview,
send through a real Celery worker into a real SMTP sink, open an RSVP link from the outbox and answer it,
see the dashboard change, export. Every page on the way is checked with axe-core for WCAG 2.1 AA, and
screenshots are saved to test-artifacts/browser/ (and, with INVITES_README_SCREENSHOTS=DIR, the README's
pictures to DIR).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SignedInOrganiser, wait_until
from tests.e2e.conftest import CHROMIUM

playwright = pytest.importorskip("playwright.sync_api")
ARTIFACTS = ROOT / "test-artifacts" / "browser"
EVENT_FILE = ROOT / "examples" / "lokaal-samenspel-2018.toml"
SLUG = "lokaal-samenspel-2018"
# A person's own browser (headless Chromium would name itself HeadlessChrome, which is a scanner's mark).
PERSON_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}

# Five good rows and three bad ones: a broken address, no address, and a duplicate of line 2.
AUDIENCE = """email;naam;functie;gemeente
anna.devries@example.org;Anna de Vries;burgemeester;Utrecht
bram@example.org;Bram Jansen;wethouder;Houten
niet-een-adres;Carla Smit;raadslid;Zeist
;Daan Bakker;griffier;Nieuwegein
eva@example.org;Eva Visser;gemeentesecretaris;Vianen
fleur@example.org;Fleur Mulder;raadslid;De Bilt
anna.devries@example.org;Anna de Vries;burgemeester;Utrecht
gijs@example.org;Gijs Bos;beleidsmedewerker;IJsselstein
"""

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium package is not installed"),
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


def read_like_a_person(page: Any) -> None:
    """What a person does before pressing: moves the pointer along a path, reads for over a second."""
    page.mouse.move(40, 60)
    page.mouse.move(180, 320, steps=16)
    page.wait_for_timeout(1200)  # reading time: a press within a second is a gateway's


class Journey:
    def __init__(self, page: Any, shots: Path) -> None:
        self.page = page
        self.shots = shots
        self.count = 0

    def shot(self, name: str) -> Path:
        self.count += 1
        path = self.shots / f"{self.count:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def accessible(self, what: str) -> None:
        from axe_playwright_python.sync_playwright import Axe

        result = Axe().run(self.page, options=WCAG)
        problems = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result.response["violations"]
        ]
        assert not problems, f"{what}: WCAG 2.1 AA problems:\n" + "\n".join(problems)


def test_the_organisers_journey(
    site: str, browser: Any, organiser: SignedInOrganiser, runtime: Any, settings: Any, tmp_path: Path
) -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    # The pages run under their real CSP: a blocked inline script or style shows as a console error below.
    context = browser.new_context(base_url=site, accept_downloads=True, locale="nl-NL")
    page = context.new_page()
    console_errors: list[str] = []
    page.on(
        "console",
        lambda message: (
            message.type == "error"
            and console_errors.append(f"{message.text} ({message.location.get('url')})")
        ),
    )
    journey = Journey(page, ARTIFACTS)

    # Sign in.
    page.goto("/")
    assert "/login" in page.url
    journey.accessible("sign-in page")
    journey.shot("sign-in")
    page.get_by_label("E-mailadres").fill(organiser.email)
    page.get_by_label("Wachtwoord").fill(organiser.password)
    page.get_by_role("button", name="Inloggen").click()
    page.wait_for_url(f"{site}/")
    assert organiser.email in page.content()

    # Create the event from the example file.
    page.goto("/events/new")
    journey.accessible("new event page")
    page.locator("#event_file").set_input_files(str(EVENT_FILE))
    page.get_by_role("button", name="Bestand laden").click()
    page.wait_for_url(re.compile(f"/events/{SLUG}$"))
    assert "Lokaal samenspel" in page.content()

    # Upload a list with some bad rows, and read the report.
    listing = tmp_path / "genodigden.csv"
    listing.write_text(AUDIENCE, encoding="utf-8")
    page.goto(f"/events/{SLUG}/upload")
    journey.accessible("upload page")
    page.locator("#file").set_input_files(str(listing))
    page.get_by_role("button", name="Uploaden en importeren").click()
    page.wait_for_url(re.compile(f"/events/{SLUG}/imports/\\d+"))
    report = page.locator("main")
    wait_until(lambda: "niet-een-adres" in report.inner_text(), timeout=60, what="the import report")
    rejected = [
        [cell.strip() for cell in row.locator("td").all_inner_texts()]
        for row in page.locator("tr").filter(has=page.locator("td")).all()
    ]
    # Line 1 is the header: the broken address is on line 4, the empty one on line 5.
    assert [
        "4",
        "email",
        "'niet-een-adres' is not a valid address: An email address must have an @-sign.",
    ] in (rejected), rejected
    assert ["5", "email", "no e-mail address"] in rejected, rejected
    journey.accessible("import report")
    journey.shot("import-report")

    # Preview the invitation.
    page.goto(f"/events/{SLUG}/preview?kind=invitation&lang=nl")
    frame = page.frame_locator("iframe")
    assert "Lokaal samenspel" in frame.locator("body").inner_text()
    journey.accessible("preview page")
    journey.shot("preview")

    # Send, after the confirmation that states the count.
    page.goto(f"/events/{SLUG}/send?kind=invitation")
    journey.accessible("send page")
    confirm = page.get_by_role("button", name=re.compile(r"Verstuur naar 5 ontvangers"))
    journey.shot("send-confirm")
    confirm.click()
    page.wait_for_url(re.compile(f"/events/{SLUG}/campaigns/\\d+"))
    wait_until(
        lambda: re.search(r"\b5 van 5\b", page.locator("main").inner_text()),
        timeout=90,
        what="the live progress to reach 5 of 5",
    )
    journey.shot("campaign-progress")

    # Open an RSVP link from the outbox, as the recipient, on a phone-sized screen.
    page.goto("/outbox")
    journey.accessible("outbox")
    page.get_by_role("link", name=re.compile("Lokaal samenspel")).first.click()
    html = page.frame_locator("iframe").locator("body").inner_html()
    link = re.search(r'href="(http://127\.0\.0\.1:\d+/r/[^"?]+)', html)
    assert link, "the message has a personal RSVP link"
    phone = browser.new_context(
        viewport={"width": 360, "height": 740}, locale="nl-NL", user_agent=PERSON_AGENT
    )
    recipient = phone.new_page()
    recipient.goto(link[1])
    assert recipient.evaluate("document.documentElement.scrollWidth") <= 360, "no sideways scrolling at 360px"
    Journey(recipient, ARTIFACTS).accessible("RSVP page")
    rsvp_shot = journey.shots / "rsvp.png"
    recipient.screenshot(path=str(rsvp_shot), full_page=True)
    read_like_a_person(recipient)
    recipient.get_by_role("button", name="Ja, ik kom").click()
    recipient.wait_for_url(re.compile(r"saved=1"))
    assert "Uw antwoord" in recipient.content()
    phone.close()

    # The dashboard shows the answer.
    page.goto(f"/events/{SLUG}")
    assert page.locator('[data-count="accepted"]').inner_text().strip() == "1"
    assert page.locator("svg").count() >= 1, "the timeline chart"
    journey.accessible("dashboard")
    dashboard_shot = journey.shot("dashboard")

    # Export the attendee list.
    page.goto(f"/events/{SLUG}/attendees")
    journey.accessible("attendee list")
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("CSV")).click()
    exported = Path(download.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(exported), delimiter=";"))  # as Dutch Excel opens it
    assert sorted(row["email"] for row in rows) == [
        "anna.devries@example.org",
        "bram@example.org",
        "eva@example.org",
        "fleur@example.org",
        "gijs@example.org",
    ]
    assert [row["answer"] for row in rows].count("accepted") == 1, rows
    assert console_errors == [], f"browser console errors (a CSP violation, say): {console_errors}"

    target = os.environ.get("INVITES_README_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(dashboard_shot, Path(target) / "dashboard.png")
        shutil.copy(rsvp_shot, Path(target) / "rsvp.png")
    context.close()
