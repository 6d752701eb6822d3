"""VERP addresses: they name their row, and cannot be forged without the secret."""

from __future__ import annotations

from invites.services.bounces import parse_verp, verp_address


def test_a_verp_address_names_its_row() -> None:
    address = verp_address("secret", 1234, "example.org")
    assert address.startswith("bounces+1234.") and address.endswith("@example.org")
    assert parse_verp("secret", address) == 1234
    assert parse_verp("secret", f"Mail Delivery <{address.upper()}>") == 1234


def test_a_forged_or_foreign_address_names_nothing() -> None:
    assert parse_verp("secret", verp_address("other", 1234, "example.org")) is None
    assert parse_verp("secret", verp_address("secret", 1234, "example.org").replace("1234", "1235")) is None
    assert parse_verp("secret", "uitnodigingen@example.org") is None
