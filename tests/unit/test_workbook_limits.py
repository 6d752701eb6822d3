"""Workbooks that unpack to far more than they weigh (decompression bombs) are refused from their zip
directory before openpyxl opens them, quickly and with flat memory; the limits are named in the error."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from openpyxl import Workbook

from invites.domain.audience import Limits, open_table
from invites.domain.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024
SHEET_START = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
)


def small_workbook() -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(["E-mailadres", "Naam"])
    sheet.append(["zoe@example.nl", "Zoë"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def replace_part(data: bytes, name: str, chunks: list[bytes], repeat: tuple[bytes, int], end: bytes) -> bytes:
    """The workbook with part `name` replaced by chunks, then repeat[0] written repeat[1] times, then end:
    streamed into the zip, so the test never holds the unpacked part in memory."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            if info.filename != name:
                target.writestr(info, source.read(info))
        with target.open(name, "w", force_zip64=True) as part:
            for chunk in chunks:
                part.write(chunk)
            block, times = repeat
            for _ in range(times):
                part.write(block)
            part.write(end)
    return out.getvalue()


def header_bomb(megabytes: int) -> bytes:
    """A header cell of `megabytes` MB of text, as in the attack (409 KB inflating to 400 MB)."""
    return replace_part(
        small_workbook(),
        "xl/worksheets/sheet1.xml",
        [SHEET_START, b'<row r="1"><c r="A1" t="inlineStr"><is><t>'],
        (b"A" * MB, megabytes),
        b"</t></is></c></row></sheetData></worksheet>",
    )


def shared_strings_bomb(megabytes: int) -> bytes:
    """A shared-strings table of `megabytes` MB of tiny strings, which openpyxl reads whole on opening."""
    block = b"<si><t>x</t></si>" * (MB // 17)
    return replace_part(
        small_workbook(),
        "xl/sharedStrings.xml",
        [b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'],
        (block, megabytes),
        b"</sst>",
    )


# Opens the file as an upload is opened, in a fresh process, and reports the peak memory it added.
MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time
    import openpyxl  # loaded before the baseline: the delta is the file's, not the library's
    from invites.domain.audience import open_table
    from invites.domain.errors import InputError
    path = sys.argv[1]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    try:
        with open(path, "rb") as stream:
            size = stream.seek(0, 2)
            stream.seek(0)
            open_table(stream, "lijst.xlsx", size, 20 * 1024 * 1024)
        outcome = "opened"
    except InputError as exc:
        outcome = str(exc)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - start, "kib": after - before}))
    """
)


def measure(path: Path) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    return dict(json.loads(result.stdout))


@pytest.mark.parametrize(
    ("make", "part"),
    [(header_bomb, "xl/worksheets/sheet1.xml"), (shared_strings_bomb, "xl/sharedStrings.xml")],
    ids=["header-cell", "shared-strings"],
)
def test_a_bomb_is_refused_at_once_with_flat_memory(
    tmp_path: Path, make: Callable[[int], bytes], part: str
) -> None:
    data = make(300)
    assert len(data) < 2 * MB, "a small file on the wire"
    path = tmp_path / "bom.xlsx"
    path.write_bytes(data)
    found = measure(path)
    outcome = str(found["outcome"])
    assert f"het onderdeel '{part}' van de werkmap pakt uit tot" in outcome, outcome
    assert "INVITES_IMPORT_MAX_MEMBER_BYTES" in outcome
    assert "sla de lijst op als CSV" in outcome
    assert float(str(found["seconds"])) < 2.0
    assert int(str(found["kib"])) < 30 * 1024, f"peak memory grew by {found['kib']} KiB"


def test_a_part_packed_past_the_ratio_is_refused() -> None:
    data = header_bomb(5)  # 5 MB of one letter: under the size limits, but packed a thousand times
    with pytest.raises(InputError, match=r"keer samengeperst.*INVITES_IMPORT_MAX_COMPRESSION_RATIO"):
        open_table(io.BytesIO(data), "lijst.xlsx", len(data), len(data))


def test_the_total_unpacked_size_is_capped() -> None:
    data = header_bomb(5)
    limits = Limits(max_uncompressed_bytes=4 * MB, max_compression_ratio=10_000)
    with pytest.raises(InputError, match=r"de werkmap pakt uit tot 5\.\d{3}\.\d{3} bytes.*UNCOMPRESSED"):
        open_table(io.BytesIO(data), "lijst.xlsx", len(data), len(data), limits=limits)


def test_a_long_cell_under_the_zip_limits_is_refused_while_reading() -> None:
    data = header_bomb(2)
    limits = Limits(max_compression_ratio=10_000)
    with pytest.raises(InputError, match=r"regel 1, kolom 1: een cel van 2\.097\.152 tekens"):
        open_table(io.BytesIO(data), "lijst.xlsx", len(data), len(data), limits=limits)


def test_a_directory_that_understates_a_part_is_not_believed() -> None:
    # The directory says the sheet unpacks to 1 KB; zipfile stops there and the CRC check fails, so the
    # lie cannot smuggle the 5 MB past the limits.
    sheet = (
        SHEET_START + b'<row r="1"><c r="A1" t="inlineStr"><is><t>' + b"A" * (5 * MB) + b"</t></is></c></row>"
    )
    sheet += b"</sheetData></worksheet>"
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(small_workbook())) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            target.writestr(
                info.filename, sheet if info.filename == "xl/worksheets/sheet1.xml" else source.read(info)
            )
    data = out.getvalue()
    true_size = len(sheet).to_bytes(4, "little")
    assert data.count(true_size) == 2, "the size in the local header and in the directory"
    lied = data.replace(true_size, (1024).to_bytes(4, "little"))
    with pytest.raises(InputError, match="cannot be read"):
        table = open_table(io.BytesIO(lied), "lijst.xlsx", len(lied), len(lied))
        list(table.rows)


def test_an_ordinary_workbook_opens() -> None:
    data = small_workbook()
    table = open_table(io.BytesIO(data), "lijst.xlsx", len(data), len(data))
    assert table.header == ["E-mailadres", "Naam"] and table.encoding is None
    assert list(table.rows) == [(2, ["zoe@example.nl", "Zoë"])]
