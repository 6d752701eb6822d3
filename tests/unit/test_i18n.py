"""Every Dutch text an organiser page shows through `_()` or `translate()` has its English in a catalogue."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from invites.web.pages import catalogue, translate

ROOT = Path(__file__).resolve().parents[2]
IN_TEMPLATES = re.compile(r"""_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


def texts() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "templates" / "web").rglob("*.html")):
        for match in IN_TEMPLATES.finditer(path.read_text(encoding="utf-8")):
            found.setdefault(match[1] or match[2], set()).add(path.name)
    for path in sorted((ROOT / "invites" / "web").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "translate"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.setdefault(node.args[0].value, set()).add(path.name)
    return found


def test_every_text_has_its_english() -> None:
    found = texts()
    assert len(found) > 100, "the scan sees the pages' texts"
    missing = {text: sorted(where) for text, where in found.items() if text not in catalogue()}
    assert not missing, f"add these to a templates/web/i18n/*.toml catalogue: {missing}"


def test_english_is_looked_up_and_dutch_is_the_default() -> None:
    assert translate("Bijeenkomsten", "nl") == "Bijeenkomsten"
    assert translate("Bijeenkomsten", "en") == "Events"
    assert translate("a text nobody translated", "en") == "a text nobody translated"
