"""Reading recipient lists: encodings, separators, header names, line numbers, rejections and warnings."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from invites.domain.audience import Person, Rejection, header_key, parse_people
from invites.domain.errors import InputError
from invites.domain.reference import load_municipalities, roles
from tests.conftest import AUDIENCE_FILE


def one(data: bytes) -> Person:
    people, rejected, warnings = parse_people(data)
    assert rejected == []
    assert warnings == []
    assert len(people) == 1
    return people[0]


def test_utf8_with_dutch_headers() -> None:
    data = (
        b"e-mailadres,voornaam,tussenvoegsel,achternaam,functie,gemeente\r\n"
        b"hanneke@example.org,Hanneke,van den,Dekker,Wethouder,Amersfoort\r\n"
    )
    person = one(data)
    assert person.line == 2
    assert person.email == "hanneke@example.org"
    assert person.first_name == "Hanneke"
    assert person.name_prefix == "van den"
    assert person.last_name == "Dekker"
    assert person.display_name == "Hanneke van den Dekker"
    assert person.role_key == "alderman"
    assert person.role_label == "Wethouder"
    assert person.municipality_code == "GM0307"
    assert person.language == "nl"


def test_utf8_with_bom_recognises_the_first_column() -> None:
    data = "\ufeffE-mail,Naam\nzoe@example.org,Zoë Ĳsbrandt\n".encode()
    assert data.startswith(b"\xef\xbb\xbf")
    person = one(data)
    assert person.email == "zoe@example.org"
    assert person.display_name == "Zoë Ĳsbrandt"


def test_windows_1252_with_semicolons() -> None:
    data = (
        "Naam;E-mailadres;Functie;Gemeente\r\nJosé Müller;jose@example.org;Raadslid;Gemeente Zeist\r\n"
    ).encode("cp1252")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    person = one(data)
    assert person.display_name == "José Müller"
    assert person.email == "jose@example.org"
    assert person.role_key == "council_member"
    assert person.municipality_code == "GM0355"


def test_tab_separated_with_english_headers() -> None:
    data = (
        b"Email Address\tFirst Name\tLast Name\tRole\tMunicipality\tLanguage\n"
        b"ann@example.org\tAnn\tSmith\tMayor\tGM0344\tEN\n"
    )
    person = one(data)
    assert (person.first_name, person.last_name, person.display_name) == ("Ann", "Smith", "Ann Smith")
    assert person.role_key == "mayor"
    assert person.municipality_code == "GM0344"
    assert person.language == "en"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("E-MAIL", "email"),
        ("e_mail", "email"),
        ("EmailAdres", "email"),
        ("E-mail address", "email"),
        ("First_Name", "first_name"),
        ("TUSSENVOEGSEL", "name_prefix"),
        ("Achternaam", "last_name"),
        ("Functie", "role"),
        ("Job Title", "role"),
        ("CBS-code", "municipality"),
        ("Organisatie", "organisation"),
        ("Organization", "organisation"),
        ("Aanhef", "salutation"),
        ("Taal", "language"),
        ("Labels", "tags"),
        ("Notitie", None),
    ],
)
def test_header_names_in_dutch_and_english_any_case(name: str, key: str | None) -> None:
    assert header_key(name) == key


def test_unknown_columns_are_kept_as_attributes() -> None:
    data = b"e-mail,Naam,Partij,Notitie\njan@example.org,Jan,GroenLinks,\n"
    person = one(data)
    assert person.attributes == {"Partij": "GroenLinks"}


def test_names_are_never_recased() -> None:
    data = b"e-mail,voornaam,tussenvoegsel,achternaam\njan@example.org,jAN,VAN DER,berg\n"
    person = one(data)
    assert (person.first_name, person.name_prefix, person.last_name) == ("jAN", "VAN DER", "berg")
    assert person.display_name == "jAN VAN DER berg"


def test_full_name_column_wins_over_parts() -> None:
    person = one(b"e-mail,naam,voornaam,achternaam\njan@example.org,mr. J. de Vries,Jan,Vries\n")
    assert person.display_name == "mr. J. de Vries"
    assert person.first_name == "Jan"


def test_address_is_normalised_and_keyed_case_blind() -> None:
    person = one(b"e-mail\n  Jan.Berg@Example.ORG \n")
    assert person.email == "Jan.Berg@example.org"
    assert person.email_key == "jan.berg@example.org"


def test_salutation_organisation_tags_and_language() -> None:
    data = (
        b"e-mail,aanhef,organisatie,tags,taal\n"
        b'jan@example.org,Hooggeachte heer,Gemeente Houten,"bestuur; sociaal domein, vip",English\n'
    )
    person = one(data)
    assert person.salutation == "Hooggeachte heer"
    assert person.organisation == "Gemeente Houten"
    assert person.municipality_code == "GM0321"
    assert person.tags == ("bestuur", "sociaal domein", "vip")
    assert person.language == "en"


def test_invalid_address_is_rejected_with_line_and_column() -> None:
    data = b"Naam,E-mailadres\nJan,jan@example.org\nPiet,piet.example.org\nKlaas,klaas@example.org\n"
    people, rejected, warnings = parse_people(data)
    assert [p.email for p in people] == ["jan@example.org", "klaas@example.org"]
    assert len(rejected) == 1
    assert rejected[0].line == 3
    assert rejected[0].column == "E-mailadres"
    assert "'piet.example.org' is not a valid address" in rejected[0].reason
    assert warnings == []


def test_empty_address_is_rejected() -> None:
    _, rejected, _ = parse_people(b"naam,e-mail\nJan,\n")
    assert rejected == [Rejection(2, "e-mail", "no e-mail address")]


def test_quoted_newline_makes_the_next_line_number_jump() -> None:
    data = (
        b"naam,e-mail,notitie\r\n"
        b'Jan,jan@example.org,"regel een\r\nregel twee\r\nregel drie"\r\n'
        b"Piet,geen-adres,x\r\n"
    )
    people, rejected, _ = parse_people(data)
    assert people[0].line == 2
    assert people[0].attributes == {"notitie": "regel een\nregel twee\nregel drie"}
    assert [(r.line, r.column) for r in rejected] == [(5, "e-mail")]


def test_blank_lines_are_skipped_but_counted() -> None:
    data = b"e-mail\n\njan@example.org\n,\n\nfout\n"
    people, rejected, _ = parse_people(data)
    assert [p.line for p in people] == [3]
    assert [r.line for r in rejected] == [6]


def test_too_many_fields_are_rejected() -> None:
    data = b"naam,e-mail,functie\nJan,jan@example.org,wethouder,extra\nPiet,piet@example.org\n"
    people, rejected, _ = parse_people(data)
    assert rejected == [Rejection(2, "", "4 fields, but the header has 3")]
    assert [p.email for p in people] == ["piet@example.org"]


def test_unknown_role_and_municipality_are_warnings_not_rejections() -> None:
    data = b"e-mail,functie,gemeente,taal\njan@example.org,Astronaut,Gotham,Duits\n"
    people, rejected, warnings = parse_people(data)
    assert rejected == []
    assert len(people) == 1
    assert people[0].role_key is None
    assert people[0].role_label == "Astronaut"
    assert people[0].municipality_code is None
    assert people[0].language == "nl"
    assert warnings == [
        "line 2: unknown role 'Astronaut'",
        "line 2: unknown municipality 'Gotham'",
        "line 2: unknown language 'Duits', using nl",
    ]


def test_no_email_column_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"no e-mail column: the header has 'naam', 'telefoon'"):
        parse_people(b"naam,telefoon\nJan,0612345678\n")


@pytest.mark.parametrize("data", [b"", b"   \r\n\n", b"\xef\xbb\xbf"])
def test_empty_file_is_an_input_error(data: bytes) -> None:
    with pytest.raises(InputError, match="empty"):
        parse_people(data)


def test_binary_file_is_an_input_error() -> None:
    with pytest.raises(InputError, match="binary"):
        parse_people(b"\x7fELF\x02\x01\x01\x00\x00\x00e-mail\njan@example.org\n")


def test_a_workbook_named_csv_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"Excel workbook, but its name ends in '\.csv'"):
        parse_people(b"PK\x03\x04\x14\x00\x00\x00e-mail\njan@example.org\n")


def test_example_audience_file() -> None:
    people, rejected, warnings = parse_people(AUDIENCE_FILE.read_bytes())
    assert len(people) == 156
    assert rejected == []
    assert warnings == []
    assert {p.role_key for p in people} == set(roles()) - {"other"}
    assert all(p.municipality_code in load_municipalities() for p in people)
    assert len({p.email_key for p in people}) == 156
    first = people[0]
    assert (first.line, first.email, first.display_name, first.role_key, first.municipality_code) == (
        2,
        "stijn.berg@amersfoort.example.nl",
        "Stijn Berg",
        "mayor",
        "GM0307",
    )


ADDRESSES = [
    "Jan@Example.ORG",
    "a.b@example.nl",
    "Postmaster@example.org",
    "x@localhost",
    "x@example.test",
    "a..b@example.org",
    ".a@example.org",
    "a@-example.org",
    "a@example..org",
    "a@example",
    "x" * 65 + "@example.org",
    "a@" + ("b" * 63 + ".") * 4 + "org",
    "zoë@example.org",
    "jan@bücher.example",
    "jan@xn--bcher-kva.example",
    "MAILER-DAEMON@example.org",
    "a+tag@example.org",
    "a@example.org.",
    "a@[127.0.0.1]",
    "Jan <j@example.org>",
    "a@b_c.example.org",
    "a@1.2.3.4",
    "a b@example.org",
    "@example.org",
    "a@",
    "a@@example.org",
    '"a b"@example.org',
    "ABUSE@Example.Org",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_check_address_agrees_with_email_validator(address: str) -> None:
    from email_validator import EmailNotValidError, validate_email

    from invites.domain.audience import check_address

    def outcome(check: Callable[[], str]) -> str:
        try:
            return check()
        except EmailNotValidError as exc:
            return f"error: {exc}"

    expected = outcome(lambda: validate_email(address, check_deliverability=False).normalized)
    assert outcome(lambda: check_address(address)) == expected
