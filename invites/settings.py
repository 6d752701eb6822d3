"""Configuration, read once from INVITES_* environment variables and passed down from there."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import AliasChoices, BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET_KEY = "dev-insecure-change-me"


class SmtpTarget(BaseModel):
    """Where to deliver: parsed from INVITES_SMTP_URL."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError(f"INVITES_SMTP_URL {url!r} must start with smtp:// or smtps://")
        if not parts.hostname:
            raise ValueError(f"INVITES_SMTP_URL {url!r} names no host")
        implicit_tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit_tls else 25),
            implicit_tls=implicit_tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class Settings(BaseSettings):
    """Every setting the service reads. The README lists each with its default."""

    model_config = SettingsConfigDict(env_prefix="INVITES_", extra="ignore", populate_by_name=True)

    var_dir: Path = Path("var")
    database_url: str = ""
    redis_url: str = ""
    smtp_url: str = ""
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str = DEFAULT_SECRET_KEY
    from_: str = Field(
        default="VNG afdeling Utrecht <uitnodigingen@example.org>",
        validation_alias=AliasChoices("INVITES_FROM", "from_"),
    )
    batch_size: int = 100
    lease_seconds: int = 300
    visibility_timeout: int = 3600
    queue: str = "invites"
    # DKIM: the private key (PEM) and the selector; the domain is the From address's.
    dkim_key_file: Path | None = None
    dkim_selector: str = ""
    # The mailto: of List-Unsubscribe; empty means the From's local part + "+unsubscribe".
    unsubscribe_mailto: str = ""
    # Operations (README "Operations"): production refuses the default secret and a non-https base URL;
    # logs are JSON lines in production unless INVITES_LOG_FORMAT says otherwise; personal data of
    # recipients is purged this many days after their last event ended (0: never).
    env: Literal["development", "production"] = "development"
    log_format: Literal["", "json", "text"] = ""
    log_level: str = "INFO"
    retention_days: int = 365
    import_max_bytes: int = 20 * 1024 * 1024
    # Imports (README "Security limits"): a workbook is refused before it is opened when it unpacks to more
    # than these (all parts, one part, one part's unpacked over packed size); any list when a cell is
    # longer, or past so many rows or rejected rows (nothing is stored then).
    import_max_uncompressed_bytes: int = 100 * 1024 * 1024
    import_max_member_bytes: int = 50 * 1024 * 1024
    import_max_compression_ratio: int = 100
    import_max_cell_chars: int = 32_767
    import_max_rows: int = 100_000
    import_max_rejections: int = 10_000
    # Request bodies (README "Security: limits on what a request may send"): every route but the list uploads
    # takes at most this much (plus 64 KiB for a form); the uploads INVITES_IMPORT_MAX_BYTES plus the same.
    body_max_bytes: int = 1024 * 1024
    # Swagger UI at /docs (README "The JSON API"): it runs a script from a CDN, so only in development and
    # only when asked for; /openapi.json is always served.
    api_docs: bool = False
    municipalities_file: Path | None = None
    rsvp_client_limit: int = 1200
    # Reminders (README "Reminders, updates and cancellations"): the local hours in which they may go out
    # (held until the next start outside them), and how many hours after its time a missed one may still
    # go out (0: until the event starts).
    reminder_hours: str = "08:00-21:00"
    reminder_max_late_hours: int = 0
    reply_imap_url: str = ""
    reply_poll_seconds: int = 120
    # Calendar replies (README "Calendar replies"): the authserv-ids of the organisation's own mail servers
    # whose Authentication-Results header is trusted (comma-separated), and the DNS server the inbound
    # endpoint's own DKIM check asks ("host" or "host:port"; empty: the system's resolver).
    reply_authserv_ids: str = ""
    dns_resolver: str = ""
    # Delivery (README "Delivery"): SMTP connections per worker process, the reply timeout, the relay's
    # preset and rate ("30/min"; empty means the preset's, or no limit), a cap per recipient domain,
    # the retry schedule in seconds (the last repeats), and when to give up (0: when the event starts).
    smtp_connections: int = 16
    smtp_timeout: float = 30.0
    smtp_verify_tls: bool = True
    smtp_preset: str = ""
    smtp_rate: str = ""
    domain_rate: str = ""
    throttle_max_wait: float = 20.0
    retry_schedule: str = "60,300,900,1800,3600"
    message_lifetime: int = 0
    sweep_seconds: int = 60
    # Bounces: the VERP domain (default: the From's), the IMAP mailbox polled for DSNs, how often.
    bounce_domain: str = ""
    bounce_imap_url: str = ""
    bounce_poll_seconds: int = 120
    # Exposure (README "Health, metrics and proxies"): the proxies whose X-Forwarded-For and -Proto are
    # believed (comma-separated addresses or CIDR networks; empty: none, the peer is the client); the networks
    # whose clients see /readyz's details and may scrape /metrics; the bearer token that may scrape /metrics;
    # and how many seconds /readyz's last check is served before the next one runs.
    trusted_proxies: str = ""
    health_networks: str = ""
    metrics_token: str = ""
    health_cache_seconds: float = 5.0

    @field_validator("trusted_proxies", "health_networks")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        for part in filter(None, (part.strip() for part in value.split(","))):
            if part == "*":
                continue
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(
                    f"{part!r} is not an IP address or a CIDR network such as 10.0.0.0/8; "
                    "give a comma-separated list of them"
                ) from None
        return value

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp(cls, value: str) -> str:
        if value:
            SmtpTarget.parse(value)
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'invites.db').resolve()}"

    @property
    def outbox_dir(self) -> Path:
        return self.var_dir / "outbox"

    @property
    def smtp(self) -> SmtpTarget | None:
        return SmtpTarget.parse(self.smtp_url) if self.smtp_url else None

    @property
    def sender(self) -> str:
        return self.from_

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [part.strip() for part in self.trusted_proxies.split(",") if part.strip()]

    @property
    def health_network_list(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        parts = [part.strip() for part in self.health_networks.split(",")]
        everyone = ["0.0.0.0/0", "::/0"] if "*" in parts else []
        return [ipaddress.ip_network(part, strict=False) for part in everyone + parts if part and part != "*"]

    @property
    def trusted_authserv_ids(self) -> frozenset[str]:
        parts = (part.strip().casefold() for part in self.reply_authserv_ids.split(","))
        return frozenset(part for part in parts if part)


# Secrets that ship in this repository (settings, docker-compose.yml, .env.example): never good in production.
KNOWN_SECRETS = frozenset({DEFAULT_SECRET_KEY, "change-me-dev-only"})
MIN_SECRET_LENGTH = 32


def production_problems(settings: Settings) -> list[str]:
    """What makes these settings unfit for production, each naming its variable; empty when fit."""
    problems = []
    if settings.secret_key in KNOWN_SECRETS or len(settings.secret_key) < MIN_SECRET_LENGTH:
        problems.append(
            f"INVITES_SECRET_KEY is the default or shorter than {MIN_SECRET_LENGTH} characters; "
            "set a long random value"
        )
    if urlsplit(settings.base_url).scheme != "https":
        problems.append(f"INVITES_BASE_URL {settings.base_url!r} is not https://")
    return problems


class UnfitForProduction(ValueError):
    """INVITES_ENV=production with settings that are only good for development."""


def check_production(settings: Settings) -> Settings:
    """Refuse to go on in production with a development secret or a base URL that is not https."""
    if settings.env == "production":
        problems = production_problems(settings)
        if problems:
            raise UnfitForProduction("INVITES_ENV=production refuses to start: " + "; ".join(problems))
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use (and checked, in production)."""
    return check_production(Settings())


PACKAGE_DIR = Path(__file__).resolve().parent


def project_dir(name: str) -> Path:
    """A data folder of the project (templates/, examples/), never looked for in the working directory.

    An installed wheel carries it inside the package (pyproject.toml maps it in as invites/<name>); in the
    source tree, where the editable install runs from, it is the top-level folder beside invites/.
    """
    installed, source = PACKAGE_DIR / name, PACKAGE_DIR.parent / name
    for folder in (installed, source):
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"the project's {name}/ folder is neither at {installed} nor at {source}")
