"""Reading recipient lists: encodings, separators, header names, line numbers, rejections and warnings."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from invites.domain.audience import (
    REPORT_KEEP,
    SAMPLE_BYTES,
    Limits,
    Person,
    Rejection,
    RowReader,
    header_key,
    open_table,
    parse_people,
)
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


# Names with every letter a Dutch list carries beyond ASCII, and the typographic dash and apostrophe that
# Word and Outlook put in names.
NAMES = [
    "Zoë Thérèse Müller",
    "José van der Ploeg–Smit",
    "Anaïs d’Hondt",
    "Françoise Jöbsis",
    "João Ñúñez",
    "Åsa Lindström-Ülkü",
    "Chloë Hélène Brûlé",
]
FORMATS = {
    # Excel "CSV (gescheiden door lijstscheidingsteken)" on a Dutch Windows.
    "cp1252": ("cp1252", ";", "cp1252"),
    # Excel "CSV UTF-8 (door komma's gescheiden)".
    "utf-8-bom": ("utf-8-sig", ",", "utf-8-sig"),
    # Excel "Unicode-tekst": UTF-16 LE with a BOM, tab-separated.
    "utf-16": ("utf-16", "\t", "utf-16"),
}


def list_bytes(rows: int, fmt: str, prefix: str = "p") -> tuple[bytes, list[str]]:
    codec, sep, _ = FORMATS[fmt]
    names = [f"{NAMES[i % len(NAMES)]} {i}" for i in range(rows)]
    lines = [sep.join(("Naam", "E-mailadres", "Functie"))]
    lines += [sep.join((name, f"{prefix}{i}@example.nl", "Raadslid")) for i, name in enumerate(names)]
    return ("\r\n".join(lines) + "\r\n").encode(codec), names


@pytest.mark.parametrize("rows", [1, 2, 500])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_name_is_kept_in_every_excel_encoding(fmt: str, rows: int) -> None:
    data, names = list_bytes(rows, fmt)
    if fmt == "utf-16":
        assert data.startswith(b"\xff\xfe"), "Excel's Unicode text is little-endian with a BOM"
    table = open_table(
        io.BytesIO(data), "lijst.txt" if fmt == "utf-16" else "lijst.csv", len(data), len(data)
    )
    assert table.encoding == FORMATS[fmt][2]
    people, rejected, warnings = parse_people(data)
    assert rejected == [] and warnings == []
    assert [p.display_name for p in people] == names
    assert [p.line for p in people] == list(range(2, rows + 2))


def test_windows_1252_is_never_mistaken_for_another_code_page() -> None:
    # charset-normalizer took lists like these for cp1250 ("Thérčse", "Joăo") and cp775 ("Josķ M³ller").
    for text in ("Thérèse", "João", "José Müller", "Zoë de Vries"):
        data = f"naam;email\r\n{text};x@example.nl\r\n".encode("cp1252")
        assert one(data).display_name == text


def test_bytes_that_are_not_windows_1252_are_refused_with_what_to_do() -> None:
    # 0x81 has no character in Windows-1252 (and cannot start a UTF-8 sequence).
    data = b"naam;email\r\nJan;jan@example.nl\r\nAn\x81;an@example.nl\r\n"
    with pytest.raises(InputError) as raised:
        parse_people(data)
    message = str(raised.value)
    assert "geen UTF-8, UTF-16 of Windows-1252 (regel 3, byte 0x81)" in message
    assert "CSV UTF-8" in message and "--encoding" in message


def test_a_chosen_encoding_is_used_and_a_wrong_one_refused() -> None:
    data = "naam;email\r\nZoë Müller;zoe@example.nl\r\n".encode("mac-roman")
    table = open_table(io.BytesIO(data), "lijst.csv", len(data), len(data), encoding="mac-roman")
    assert table.encoding == "mac-roman"
    reader = RowReader(table.header)
    person = reader.read(*next(table.rows))
    assert isinstance(person, Person) and person.display_name == "Zoë Müller"
    cp1252 = "naam;email\r\nZoë;zoe@example.nl\r\n".encode("cp1252")
    with pytest.raises(InputError, match=r"niet in UTF-8 \(regel 2, byte 0xeb\)"):
        open_table(io.BytesIO(cp1252), "lijst.csv", len(cp1252), len(cp1252), encoding="utf-8")
    with pytest.raises(InputError, match="onbekende tekencodering 'klingon'"):
        open_table(io.BytesIO(cp1252), "lijst.csv", len(cp1252), len(cp1252), encoding="klingon")
    # A UTF-8 file chosen as UTF-8 keeps its BOM out of the first column's name.
    bom = "\ufeffemail;naam\r\nzoe@example.nl;Zoë\r\n".encode()
    assert open_table(io.BytesIO(bom), "l.csv", len(bom), len(bom), encoding="utf-8").header[0] == "email"


def test_a_non_utf8_byte_after_the_first_part_still_decides_the_encoding() -> None:
    # The whole file is read, not a sample: a list whose first é is far down is still Windows-1252.
    rows = "".join(f"p{i}@example.nl;Jan\r\n" for i in range(20_000))
    data = ("email;naam\r\n" + rows + "late@example.nl;Renée\r\n").encode("cp1252")
    assert len(data) > SAMPLE_BYTES
    people, _, _ = parse_people(data)
    assert people[-1].display_name == "Renée"


def test_a_report_keeps_the_first_warnings_and_counts_them_all() -> None:
    reader = RowReader(["email", "functie"])
    for line in range(2, REPORT_KEEP + 502):
        reader.read(line, [f"p{line}@example.nl", "x" * 10_000])
    assert reader.warning_count == REPORT_KEEP + 500
    assert len(reader.warnings) == REPORT_KEEP
    assert max(len(w) for w in reader.warnings) < 120, "a warning quotes a cell cut short"


def test_a_cell_longer_than_the_limit_is_refused_with_its_place() -> None:
    data = b"email;naam\r\njan@example.nl;" + b"x" * 200 + b"\r\n"
    table = open_table(io.BytesIO(data), "l.csv", len(data), len(data), limits=Limits(max_cell_chars=100))
    with pytest.raises(
        InputError, match=r"regel 2, kolom 2: een cel van 200 tekens.*INVITES_IMPORT_MAX_CELL_CHARS"
    ):
        next(table.rows)
