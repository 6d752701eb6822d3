"""Reference data lookups: every alias of every role, and municipalities by name, code, prefix, spelling."""

from __future__ import annotations

import csv

import pytest

from invites.domain.reference import DATA, fold, load_municipalities, match_role, roles

PLACES = load_municipalities()


def role_rows() -> list[dict[str, str]]:
    with (DATA / "roles.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def municipality_rows() -> list[dict[str, str]]:
    with (DATA / "utrecht-municipalities.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def every_role_name() -> list[tuple[str, str]]:
    """(written form, role key) for the key, labels and every alias in roles.csv."""
    pairs = []
    for row in role_rows():
        names = [row["key"], row["nl_singular"], row["nl_plural"], row["en"]]
        names += [alias for alias in row["aliases"].split(";") if alias.strip()]
        pairs += [(name, row["key"]) for name in names]
    return pairs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Zoë", "zoe"),
        ("  Wijk-bij   Duurstede ", "wijk bij duurstede"),
        ("Ĳsselstein", "ijsselstein"),
        ("IJSSELSTEIN", "ijsselstein"),
        ("Straße", "strasse"),
        ("Cliënten\tRaad", "clienten raad"),
        ("", ""),
    ],
)
def test_fold(text: str, expected: str) -> None:
    assert fold(text) == expected


def test_roles_csv_is_read_whole() -> None:
    assert list(roles()) == [row["key"] for row in role_rows()]
    mayor = roles()["mayor"]
    assert mayor.label("nl") == "burgemeester"
    assert mayor.label("en") == "mayor"
    assert mayor.salutation("nl") == "Geachte burgemeester"
    assert mayor.salutation("en") == "Dear Mayor"
    assert "loco-burgemeester" in mayor.aliases


@pytest.mark.parametrize(("text", "key"), every_role_name())
def test_every_name_in_roles_csv_matches_its_own_role(text: str, key: str) -> None:
    assert match_role(text) == key
    assert match_role(text.upper()) == key
    assert match_role(f"  {text.title()} ") == key


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Gemeenteraadslid", "council_member"),
        ("fractievoorzitter", "council_member"),
        ("Fractievoorzitter", "council_member"),
        ("loco-burgemeester", "mayor"),
        ("Loco burgemeester", "mayor"),
        ("Burgemeester", "mayor"),
        ("Wethouders", "alderman"),
        ("Raadsgriffier", "clerk"),
        ("Plv. griffier", "clerk"),
        ("secretaris-directeur", "secretary"),
        ("Senior beleidsmedewerker", "policy_officer"),
        ("Council Member", "council_member"),
    ],
)
def test_match_role_spellings(text: str, key: str) -> None:
    assert match_role(text) == key


@pytest.mark.parametrize("text", ["astronaut", "", "   ", "burgemeester van Utrecht", "raad", "overig lid"])
def test_unknown_role_is_none(text: str) -> None:
    assert match_role(text) is None


def test_municipalities_csv_is_read_whole() -> None:
    rows = municipality_rows()
    assert len(PLACES) == len(rows)
    assert PLACES.by_code["GM0344"].name == "Utrecht"
    assert PLACES.by_code["GM0344"].province == "Utrecht"


@pytest.mark.parametrize(
    ("text", "code"),
    [(row["name"], row["cbs_code"]) for row in municipality_rows()]
    + [(row["cbs_code"], row["cbs_code"]) for row in municipality_rows()],
)
def test_every_municipality_matches_by_name_and_by_code(text: str, code: str) -> None:
    assert PLACES.match(text) == code


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Gemeente Utrecht", "GM0344"),
        ("gemeente utrecht", "GM0344"),
        ("gem. De Bilt", "GM0310"),
        ("Gem De Bilt", "GM0310"),
        ("de bilt", "GM0310"),
        ("GM0344", "GM0344"),
        ("gm0344", "GM0344"),
        (" GM0344 ", "GM0344"),
        ("ijsselstein", "GM0353"),
        ("IJsselstein", "GM0353"),
        ("Ĳsselstein", "GM0353"),
        ("Gemeente IJsselstein", "GM0353"),
        ("Wijk bij Duurstede", "GM0352"),
        ("wijk-bij-duurstede", "GM0352"),
        ("Gemeente  Stichtse   Vecht", "GM1904"),
        ("Utrechtse Heuvelrug", "GM1581"),
    ],
)
def test_match_municipality_spellings(text: str, code: str) -> None:
    assert PLACES.match(text) == code


@pytest.mark.parametrize(
    "text",
    ["Amsterdam", "GM0363", "GM9999", "", "   ", "Gemeente", "gem.", "Utrecht West", "Provincie Utrecht"],
)
def test_unknown_municipality_is_none(text: str) -> None:
    assert PLACES.match(text) is None


def test_municipality_name() -> None:
    assert PLACES.name("GM0353") == "IJsselstein"
    assert PLACES.name("GM9999") == "GM9999"
    assert PLACES.name(None) == ""
    assert PLACES.name("") == ""
