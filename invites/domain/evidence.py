"""How an answer came, and whether a person gave it: the rule that keeps link detonation out of the counts.

Mail gateways (Microsoft Defender's Safe Links, Mimecast, Proofpoint) open every link of a message in a
headless browser within seconds of delivery, and again just before a person's own visit. They run the page's
script, may hide `navigator.webdriver`, use an ordinary browser's user agent, and press buttons at once: by a
trusted click with no pointer path before it, by `element.click()`, or by `form.requestSubmit()`. A person
opens the mail a minute or more after it arrived, reads for a second or more, and moves the pointer, scrolls,
tabs or touches the screen before pressing.

So every answer from a page carries its evidence: a signed stamp of when the page was served (and whether
that page load looked like a scanner), what the page's script saw before the press (static/app.js), and the
seconds since the message was delivered. `judge` turns it into a decision; the README's "Answers that are
held" states the same rule in words. Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

# A person reads for at least this long before pressing; a gateway presses at once.
MIN_DWELL = timedelta(seconds=1)
# Without a script's evidence, only the time since delivery is left to tell a person from a gateway.
MIN_SINCE_DELIVERY = timedelta(seconds=60)
# A pointer path, not the single move a scripted trusted click makes to reach its target.
MIN_POINTER_MOVES = 5
# A stamp older than this is a page left open for days: still a person's page, but its dwell says nothing.
STAMP_LIFETIME = timedelta(days=7)
# Fetches this soon after delivery are almost never a person reading their mail.
SCANNER_WINDOW = timedelta(seconds=30)
SCANNER_AGENTS = re.compile(
    r"safelinks|mimecast|proofpoint|barracuda|symantec|trendmicro|forcepoint|fortiguard|sophos|"
    r"microsoft office|ms-office|bingpreview|googleimageproxy|yahoo.*slurp|python-requests|curl|wget|"
    r"go-http-client|headlesschrome|phantomjs|\bbot\b|crawler|spider|scanner|preview",
    re.IGNORECASE,
)


def likely_scanner(user_agent: str, delivered_at: datetime | None, now: datetime) -> bool:
    """Whether a page load looks like a link scanner: by its user agent, or by coming right after delivery."""
    if SCANNER_AGENTS.search(user_agent or ""):
        return True
    return delivered_at is not None and now - delivered_at < SCANNER_WINDOW


def _mac(secret: str, subject: str, millis: int, flagged: bool) -> str:
    message = f"served:{subject}:{millis}:{int(flagged)}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:12]).rstrip(b"=").decode()


def page_stamp(secret: str, subject: str, served_at: datetime, flagged: bool = False) -> str:
    """The hidden field a page carries: when it was served and whether that load looked like a scanner,
    signed for one token (`subject`), so a press can say how long after the page it came."""
    millis = int(served_at.timestamp() * 1000)
    return f"{millis}.{int(flagged)}.{_mac(secret, subject, millis, flagged)}"


@dataclass(frozen=True)
class Stamp:
    served_at: datetime
    flagged: bool


def read_stamp(secret: str, subject: str, value: str, now: datetime) -> Stamp | None:
    """The stamp a press sent back, or None when it is missing, forged, for another token, or stale."""
    millis_text, _, rest = value.partition(".")
    flag_text, _, mac = rest.partition(".")
    if not millis_text.isdigit() or flag_text not in ("0", "1") or not mac:
        return None
    millis, flagged = int(millis_text), flag_text == "1"
    if not hmac.compare_digest(mac.encode(), _mac(secret, subject, millis, flagged).encode()):
        return None
    served_at = datetime.fromtimestamp(millis / 1000, tz=now.tzinfo)
    if served_at > now + timedelta(seconds=5) or now - served_at > STAMP_LIFETIME:
        return None
    return Stamp(served_at, flagged)


@dataclass(frozen=True)
class Seen:
    """What the page's script saw before the press (the `evidence` field); all zero when no script ran."""

    script: bool = False
    moves: int = 0
    keys: int = 0
    wheel: int = 0
    touch: int = 0
    # The press itself was a person's: a trusted click or key, not element.click() or requestSubmit().
    trusted_press: bool = False

    @property
    def interaction(self) -> bool:
        return self.moves >= MIN_POINTER_MOVES or self.keys > 0 or self.wheel > 0 or self.touch > 0


_SEEN_FIELDS = {"m": "moves", "k": "keys", "w": "wheel", "t": "touch"}


def read_seen(value: str) -> Seen:
    """The `evidence` field as static/app.js writes it (`js;m=12;k=0;w=1;t=0;p=1`); else: no script ran."""
    parts = value.strip().split(";")
    if parts[0] != "js":
        return Seen()
    counts: dict[str, int] = {}
    trusted = False
    for part in parts[1:]:
        key, _, number = part.partition("=")
        if not number.isdigit():
            continue
        if key in _SEEN_FIELDS:
            counts[_SEEN_FIELDS[key]] = min(int(number), 100_000)
        elif key == "p":
            trusted = number == "1"
    return Seen(script=True, trusted_press=trusted, **counts)


@dataclass(frozen=True)
class Evidence:
    """How one answer came: what is stored with it, and what `judge` decides on."""

    # Seconds from the relay's 250 for this person's last message to the press; None when nothing was sent.
    since_delivery: float | None
    # Seconds from the page being served to the press; None when the press came without the page's stamp.
    dwell: float | None
    seen: Seen
    page_flagged: bool
    client: str
    user_agent: str
    # The second press of a held answer ("Bevestigen"): the one extra step for a person without scripts.
    confirmation: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "since_delivery": None if self.since_delivery is None else round(self.since_delivery, 3),
            "dwell": None if self.dwell is None else round(self.dwell, 3),
            "seen": asdict(self.seen),
            "page_flagged": self.page_flagged,
            "client": self.client,
            "user_agent": self.user_agent[:300],
            "confirmation": self.confirmation,
        }


def gather(
    secret: str,
    subject: str,
    fields: dict[str, str],
    client: str,
    user_agent: str,
    delivered_at: datetime | None,
    now: datetime,
) -> Evidence:
    """The evidence of one press of a page's form (its `served`, `evidence` and `step` fields)."""
    stamp = read_stamp(secret, subject, fields.get("served", ""), now)
    return Evidence(
        since_delivery=None if delivered_at is None else (now - delivered_at).total_seconds(),
        dwell=None if stamp is None else max(0.0, (now - stamp.served_at).total_seconds()),
        seen=read_seen(fields.get("evidence", "")),
        page_flagged=bool(stamp and stamp.flagged),
        client=client,
        user_agent=user_agent,
        confirmation=fields.get("step") == "confirm",
    )


@dataclass(frozen=True)
class Judgement:
    person: bool
    # Why it is held, in Dutch for the organiser's overview; empty when it counts.
    reason: str = ""


def judge(evidence: Evidence) -> Judgement:
    """Whether a press was a person's. Everything that is not clearly a person's is held for the organiser.

    1. A user agent that names a scanner is held.
    2. A press without the page's stamp (nobody loaded the page) is held.
    3. A press less than a second after the page was served is held: a gateway presses at once.
    4. With the page's script: a person's interaction before the press (a pointer path, a key, the wheel,
       a touch) and a trusted press count; anything else is held.
    5. Without a script: the first press is held and the page asks for one more ("Bevestigen"); that
       confirmation counts when it too came a second or more after its page, and a minute or more after
       the message was delivered.
    """
    seen = evidence.seen
    if SCANNER_AGENTS.search(evidence.user_agent or ""):
        return Judgement(False, "de browser noemt zich een linkscanner")
    if evidence.dwell is None:
        return Judgement(False, "gegeven zonder dat de antwoordpagina was geladen")
    if evidence.dwell < MIN_DWELL.total_seconds():
        return Judgement(
            False, f"{_seconds(evidence.dwell)} na het openen van de pagina gegeven: sneller dan iemand leest"
        )
    if seen.script:
        if not seen.interaction:
            return Judgement(False, "geen muisbeweging, scrollen, toets of aanraking vóór de klik")
        if not seen.trusted_press:
            return Judgement(False, "de knop werd door een script ingedrukt, niet door iemand")
        return Judgement(True)
    if not evidence.confirmation:
        return Judgement(False, "zonder JavaScript gegeven; wacht op de bevestiging")
    since = evidence.since_delivery
    if since is not None and since < MIN_SINCE_DELIVERY.total_seconds():
        return Judgement(False, f"{_seconds(since)} na de bezorging bevestigd, zonder JavaScript")
    return Judgement(True)


def _seconds(value: float) -> str:
    return f"{value:.1f} s".replace(".", ",")
