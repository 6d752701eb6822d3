"""Import benchmark: a generated CSV of 100,000 rows, streamed from disk into SQLite (and PostgreSQL when
INVITES_TEST_DATABASE_URL is set). Prints rows/s and the peak RSS of the importing process, and the peak for
a file a tenth the size, so the ratio shows that memory stays flat as the list grows. Each run is a fresh
process, so one run's peak cannot hide another's.

    python -m bench.import [--rows N] [--repeat N]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from invites import db
from invites.domain.eventfile import parse_event_file
from invites.domain.reference import load_municipalities, roles
from invites.services.events import load_event
from invites.services.imports import import_stream
from invites.settings import project_dir

NOW = datetime(2018, 1, 15, 9, 0, tzinfo=UTC)
FIRST = ["Anne", "Bram", "Zoë", "Daan", "Eva", "Femke", "Gijs", "Joëlle", "Koen", "Lotte", "Sem", "Noor"]
PREFIX = ["", "", "", "van", "de", "van der", "van den", "ter"]
LAST = ["Berg", "Jansen", "Visser", "Bakker", "Smit", "Meijer", "Mulder", "Bos", "Ĳzerman", "Dijk"]


def generate(path: Path, rows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    places = [m.name for m in load_municipalities().values()]
    role_names = [alias for role in roles().values() for alias in role.aliases] or ["raadslid"]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(
            ["E-mailadres", "Voornaam", "Tussenvoegsel", "Achternaam", "Functie", "Gemeente", "Dieet"]
        )
        for i in range(rows):
            writer.writerow(
                [
                    f"person.{i}@gemeente{i % 400}.example.nl",
                    rng.choice(FIRST),
                    rng.choice(PREFIX),
                    rng.choice(LAST),
                    rng.choice(role_names),
                    f"Gemeente {rng.choice(places)}",
                    rng.choice(["", "vegetarisch"]),
                ]
            )


def run(url: str, path: Path) -> dict[str, float]:
    """Import `path` into a fresh database at `url`, in this process; returns seconds, rows and peak RSS."""
    engine = db.make_engine(url)
    db.downgrade(engine, "base")
    db.upgrade(engine)
    factory = db.session_factory(engine)
    spec = parse_event_file((project_dir("examples") / "lokaal-samenspel-2018.toml").read_bytes())
    started = time.perf_counter()
    with db.transaction(factory) as session, path.open("rb") as stream:
        event = load_event(session, spec, NOW).event
        report = import_stream(session, event, stream, path.name, path.stat().st_size, NOW, max_bytes=1 << 34)
    elapsed = time.perf_counter() - started
    engine.dispose()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": elapsed, "rows": report.accepted, "peak_mib": peak_kib / 1024}


def run_in_child(url: str, path: Path) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-m", "bench.import", "--child", url, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run(args.child[0], Path(args.child[1]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        small, large = Path(tmp) / "small.csv", Path(tmp) / "large.csv"
        generate(small, args.rows // 10)
        generate(large, args.rows)
        targets = {"sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}"}
        if os.environ.get("INVITES_TEST_DATABASE_URL"):
            targets["postgresql"] = os.environ["INVITES_TEST_DATABASE_URL"]
        for name, url in targets.items():
            runs = [run_in_child(url, large) for _ in range(args.repeat)]
            seconds = statistics.median(r["seconds"] for r in runs)
            rows = int(runs[0]["rows"])
            peak = statistics.median(r["peak_mib"] for r in runs)
            small_peak = run_in_child(url, small)["peak_mib"]
            print(
                f"import {name}: {rows:,} rows in {seconds:.2f} s (median of {args.repeat}) = "
                f"{rows / seconds:,.0f} rows/s (goal 10,000); peak RSS {peak:.0f} MiB for {args.rows:,} "
                f"rows vs {small_peak:.0f} MiB for {args.rows // 10:,}: ratio {peak / small_peak:.2f} "
                "for 10x the rows"
            )


if __name__ == "__main__":
    main()
