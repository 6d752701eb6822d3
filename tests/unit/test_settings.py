"""Production mode refuses development secrets and a base URL that is not https, naming the setting."""

from __future__ import annotations

import re

import pytest

from invites.settings import DEFAULT_SECRET_KEY, Settings, UnfitForProduction, check_production, get_settings

STRONG = "s3cr3t-" * 8


def test_development_accepts_the_defaults() -> None:
    assert check_production(Settings()).env == "development"


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(UnfitForProduction, match="INVITES_SECRET_KEY"):
        check_production(
            Settings(env="production", secret_key=DEFAULT_SECRET_KEY, base_url="https://x.example.org")
        )
    with pytest.raises(UnfitForProduction, match="INVITES_SECRET_KEY"):
        check_production(
            Settings(env="production", secret_key="change-me-dev-only", base_url="https://x.example.org")
        )


def test_production_refuses_a_base_url_that_is_not_https() -> None:
    with pytest.raises(
        UnfitForProduction, match=re.escape("INVITES_BASE_URL 'http://invites.example.org' is not https")
    ):
        check_production(Settings(env="production", secret_key=STRONG, base_url="http://invites.example.org"))


def test_production_accepts_a_long_secret_and_https() -> None:
    fit = Settings(env="production", secret_key=STRONG, base_url="https://invites.example.org")
    assert check_production(fit) is fit


def test_the_process_settings_are_checked_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVITES_ENV", "production")
    monkeypatch.setenv("INVITES_BASE_URL", "https://invites.example.org")
    monkeypatch.delenv("INVITES_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(UnfitForProduction, match="INVITES_SECRET_KEY"):
            get_settings()
    finally:
        get_settings.cache_clear()
