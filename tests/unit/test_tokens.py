"""RSVP tokens: they round-trip, resist tampering, can be revoked, and carry enough entropy."""

from __future__ import annotations

import base64

import pytest

from invites.domain.tokens import make_token, new_public_id, split_token, token_matches

SECRET = "test-secret"


def unpadded_b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_round_trip() -> None:
    public_id = new_public_id()
    token = make_token(SECRET, public_id, 1)
    assert split_token(token) == public_id
    assert token_matches(SECRET, token, public_id, 1)


def test_token_is_deterministic() -> None:
    assert make_token(SECRET, "abc", 3) == make_token(SECRET, "abc", 3)


def test_every_changed_character_fails() -> None:
    public_id = new_public_id()
    token = make_token(SECRET, public_id, 1)
    for index, char in enumerate(token):
        if char == ".":
            continue
        forged = token[:index] + ("A" if char != "A" else "B") + token[index + 1 :]
        assert not token_matches(SECRET, forged, public_id, 1), index


def test_another_public_id_does_not_match() -> None:
    token = make_token(SECRET, new_public_id(), 1)
    assert not token_matches(SECRET, token, new_public_id(), 1)


def test_bumped_version_revokes() -> None:
    public_id = new_public_id()
    old = make_token(SECRET, public_id, 1)
    assert not token_matches(SECRET, old, public_id, 2)
    assert token_matches(SECRET, make_token(SECRET, public_id, 2), public_id, 2)


def test_other_secret_fails() -> None:
    public_id = new_public_id()
    token = make_token("another-secret", public_id, 1)
    assert not token_matches(SECRET, token, public_id, 1)


def test_token_does_not_contain_the_address() -> None:
    public_id = new_public_id()
    token = make_token(SECRET, public_id, 1)
    assert "@" not in token
    assert token.split(".") == [public_id, token.rsplit(".", 1)[1]]
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_public_id_has_at_least_96_bits() -> None:
    public_id = new_public_id()
    assert len(public_id) == 16
    assert len(unpadded_b64(public_id)) * 8 >= 96
    assert len({new_public_id() for _ in range(1000)}) == 1000


def test_mac_has_at_least_128_bits() -> None:
    _, _, mac = make_token(SECRET, new_public_id(), 1).partition(".")
    assert len(mac) == 22
    assert len(unpadded_b64(mac)) * 8 >= 128


@pytest.mark.parametrize("token", ["", "no-dot", ".mac-only", "public-only.", "a." + "b" * 100])
def test_malformed_tokens_are_refused(token: str) -> None:
    assert split_token(token) is None
