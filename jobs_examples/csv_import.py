"""Import a CSV of customers into SQLite, row by row, resuming by byte offset.

    iterctl run jobs_examples.csv_import:CsvImport --job-id import-1
    iterctl run jobs_examples.csv_import:CsvImport --param csv=/data/customers.csv

Without ``csv`` it writes a sample ``customers.csv`` (``rows`` rows, default 10,000, with
quoted commas and line breaks in the notes) in the current folder if absent. Each row is
upserted by email, so a row redone after a crash does no harm. Resume is a seek to the
byte offset after the last row done; if the file changed meanwhile, iterctl refuses (exit 2)
rather than skip or repeat rows.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Column, Engine, MetaData, String, Table
from sqlalchemy.dialects.sqlite import insert

from iterctl import Job
from iterctl.enumerators import csv_rows
from jobs_examples.sqlite_file import sqlite_engine

metadata = MetaData()
customers = Table(
    "customers",
    metadata,
    Column("email", String(80), primary_key=True),
    Column("name", String(80), nullable=False),
    Column("country", String(2), nullable=False),
    Column("note", String(200), nullable=False),
)


class ImportParams(BaseModel):
    csv: str = Field(default="customers.csv", description="the CSV file, with a header row")
    db: str = Field(default="customers.db", description="SQLite file to import into")
    rows: int = Field(default=10_000, ge=0, description="rows of the sample CSV, if written")


def write_sample(path: Path, rows: int) -> None:
    """A sample export: header, then rows with a comma in names and line breaks in notes."""
    countries = ["FR", "DE", "JP", "BR", "CA"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "name", "country", "note"])
        for n in range(rows):
            note = "VIP,\nsince 2019" if n % 50 == 0 else ""
            writer.writerow([f"user{n}@example.com", f"Doe, Jane #{n}", countries[n % 5], note])


class CsvImport(Job):
    """Items are CSV rows as dicts; the cursor is the byte offset after the row."""

    Params = ImportParams
    params: ImportParams

    @cached_property
    def engine(self) -> Engine:
        engine = sqlite_engine(self.params.db)
        metadata.create_all(engine)
        return engine

    def build_enumerator(self, cursor: int | None) -> Iterable[tuple[dict[str, str], Any]]:
        path = Path(self.params.csv)
        if not path.exists():
            write_sample(path, self.params.rows)
        return csv_rows(path, cursor=cursor, count=True)

    def each_iteration(self, row: dict[str, str]) -> None:
        upsert = insert(customers).values(**row)
        upsert = upsert.on_conflict_do_update(index_elements=["email"], set_=dict(row))
        with self.engine.begin() as connection:
            connection.execute(upsert)
