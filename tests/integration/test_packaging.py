"""The wheel carries everything the service reads at run time: every module, the top-level templates/ and
examples/ (as invites/templates and invites/examples), the reference data and the migrations; and the code
finds them inside the installed package, not in the working directory. `make wheel-check` (CI) goes further
and runs the demo from the wheel in a fresh venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from invites.db.engine import alembic_config
from tests.conftest import ROOT

# What the wheel is built from; the build runs on a copy, so that it writes nothing into the checkout.
SOURCES = ("pyproject.toml", "README.md", "invites", "workers", "templates", "examples")
# Where each folder of the source tree lands in the wheel.
LANDS_IN = {
    "invites": "invites",
    "workers": "workers",
    "templates": "invites/templates",
    "examples": "invites/examples",
}


def source_files(folder: str) -> set[str]:
    root = ROOT / folder
    return {
        f"{LANDS_IN[folder]}/{path.relative_to(root).as_posix()}"
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("packaging")
    tree = work / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            tree.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    build = [sys.executable, "-m", "build", "--wheel", "--no-isolation"]
    result = subprocess.run(
        [*build, "--outdir", str(work / "dist"), str(tree)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (built,) = (work / "dist").glob("invites-*.whl")
    yield built


def test_the_wheel_holds_every_module_template_example_migration_and_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in LANDS_IN:
        missing = source_files(folder) - names
        assert not missing, f"{folder}/ files missing from the wheel: {sorted(missing)}"
    for expected in (
        "invites/templates/web/rsvp.html",
        "invites/templates/web/static/app.css",
        "invites/templates/web/i18n/common.toml",
        "invites/templates/email/invitation/body.nl.html",
        "invites/examples/lokaal-samenspel-2018.toml",
        "invites/examples/audience-utrecht.csv",
        "invites/domain/data/utrecht-municipalities.csv",
        "invites/db/migrations/env.py",
        "invites/db/migrations/script.py.mako",
        "invites/db/migrations/versions/0001_initial_schema.py",
    ):
        assert expected in names
    assert not [name for name in names if name.startswith(("tests/", "bench/", "templates/", "examples/"))]


def test_an_installed_wheel_finds_its_files_in_the_package_not_the_working_directory(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = (
        "import invites, workers\n"
        "from alembic.script import ScriptDirectory\n"
        "from invites.db.engine import alembic_config\n"
        "from invites.settings import project_dir\n"
        "from invites.messages.rendering import TemplateSet\n"
        "from invites.web.pages import catalogue\n"
        "print(invites.__file__)\n"
        "print(workers.__file__)\n"
        "print(project_dir('templates'))\n"
        "print(project_dir('examples'))\n"
        "print(TemplateSet().root)\n"
        "print(ScriptDirectory.from_config(alembic_config('sqlite://')).dir)\n"
        "print(ScriptDirectory.from_config(alembic_config('sqlite://')).get_current_head())\n"
        "print(len(catalogue()))\n"
    )
    # The unpacked wheel comes first on the path, ahead of the editable install of this checkout.
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVITES_")}
    env["PYTHONPATH"] = str(site)
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    *paths, head, translations = result.stdout.splitlines()
    for path in paths:
        assert Path(path).is_relative_to(site), f"{path} is not from the installed wheel"
    assert head == ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert int(translations) > 0


def test_the_source_tree_finds_the_top_level_folders() -> None:
    from invites.settings import project_dir

    assert project_dir("templates") == ROOT / "templates"
    assert project_dir("examples") == ROOT / "examples"
    with pytest.raises(FileNotFoundError, match="nowhere/ folder"):
        project_dir("nowhere")
