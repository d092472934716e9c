"""`atb db backup` / `atb db restore` against a real PostgreSQL.

Every table gets rows covering every column; a backup restored into a fresh database must give
back the same rows (count and checksum per table), and a restore that fails must change nothing.
"""

from __future__ import annotations

import datetime as dt
import decimal
import gzip
import hashlib
import json
import stat
from collections.abc import Callable
from pathlib import Path

import peewee as pw
import pytest
from helpers import atb_db, atb_subprocess

from atb.db import connection
from atb.db.fields import EnumField
from atb.db.migrate import HISTORY_TABLE
from atb.db.models import ALL_MODELS
from atb.testing import execute_sql, settings_for_tests, url_with_database

TABLES = [model._meta.table_name for model in ALL_MODELS] + [HISTORY_TABLE]
FORMATS = ["atb.dump", "atb.sql.gz"]


def sample_value(field: pw.Field, i: int, made: dict) -> object:
    """A value for every column type atb uses; distinct per row so unique keys hold."""
    if isinstance(field, pw.ForeignKeyField):
        parent = made[field.rel_model][i % len(made[field.rel_model])]
        return parent[field.rel_field.name]
    if isinstance(field, EnumField):
        members = list(field.enum_class)
        return members[i % len(members)].value
    if isinstance(field, pw.DecimalField):
        return decimal.Decimal(f"{i + 1}.12345678")
    if isinstance(field, pw.CharField):
        return f"{field.name}-{i}"[-field.max_length :]
    if isinstance(field, pw.DateTimeField):
        return dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC) + dt.timedelta(hours=i)
    if isinstance(field, pw.JSONField):
        return {"row": i, "values": [1, 2.5, None, "x"], "nested": {"ok": True}}
    if isinstance(field, pw.BooleanField):
        return i % 2 == 0
    if isinstance(field, pw.IntegerField):
        return i + 7
    if isinstance(field, pw.TextField):
        return f"text {i}: it's ünïcode, with 'quotes' and \\backslashes\\"
    if isinstance(field, pw.TimeField):
        return dt.time(9, 30, i)
    raise AssertionError(f"no sample for {field!r}")


def fill_every_table(url: str, rows: int = 3) -> None:
    """`rows` rows in every atb table, every column set, foreign keys pointing at real parents."""
    connection.connect(settings=settings_for_tests(url))
    try:
        made: dict = {}
        for model in ALL_MODELS:
            made[model] = []
            for i in range(rows):
                values = {
                    field.name: sample_value(field, i, made)
                    for field in model._meta.sorted_fields
                    if not field.primary_key
                }
                values["id"] = model.insert(**values).execute()
                made[model].append(values)
    finally:
        connection.disconnect()


def fingerprint(url: str) -> dict[str, tuple]:
    """Per table: (row count, md5 of every row's text in id order)."""
    found = {}
    for table in TABLES:
        ((count, digest),) = execute_sql(
            url,
            f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) "
            f'FROM "{table}" t',
        )
        found[table] = (count, digest)
    return found


def backup_of(url: str, target: Path) -> Path:
    """`atb db backup` of the database into `target` (its suffix picks the format)."""
    made = atb_db("backup", "--url", url, "--output", str(target))
    assert made.exit_code == 0, made.output
    return target


@pytest.mark.parametrize("name", FORMATS)
def test_backup_then_restore_into_a_fresh_database_reproduces_every_row(
    name: str, source_url: str, make_pg_database: Callable[..., str], tmp_path: Path
) -> None:
    target = tmp_path / name
    made = atb_db("backup", "--url", source_url, "--output", str(target))
    assert made.exit_code == 0, made.output
    assert "backup written" in made.output

    fresh = make_pg_database("atb_cli_fresh")
    restored = atb_db("restore", str(target), "--url", fresh, "--yes")
    assert restored.exit_code == 0, restored.output

    before, after = fingerprint(source_url), fingerprint(fresh)
    assert all(count == 3 for table, (count, _) in before.items() if table != HISTORY_TABLE)
    assert after == before


@pytest.mark.parametrize("name", FORMATS)
def test_restore_replaces_the_contents_of_a_populated_database(
    name: str, source_url: str, other_url: str, tmp_path: Path
) -> None:
    target = backup_of(source_url, tmp_path / name)
    result = atb_db("restore", str(target), "--url", other_url, "--yes")
    assert result.exit_code == 0, result.output
    assert fingerprint(other_url) == fingerprint(source_url)


@pytest.mark.parametrize("name", FORMATS)
def test_a_backup_file_is_private_complete_and_alone(
    name: str, source_url: str, tmp_path: Path
) -> None:
    target = tmp_path / "nested" / name
    result = atb_db("backup", "--url", source_url, "--output", str(target), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["path"] == str(target)
    assert data["size_bytes"] == target.stat().st_size > 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # no partial file left; the checksum beside it is in `sha256sum -c` form
    assert sorted(p.name for p in target.parent.iterdir()) == [name, name + ".sha256"]
    recorded, named = (target.parent / (name + ".sha256")).read_text().split()
    assert named == name
    assert recorded == hashlib.sha256(target.read_bytes()).hexdigest()
    server_major = int(data["server_version"].split(".")[0])
    tool_major = int(data["tool"].split()[1].split(".")[0])
    assert tool_major >= server_major  # e.g. the wheel's pg_dump 18 for the embedded server


def test_a_backup_never_overwrites_unless_forced(source_url: str, tmp_path: Path) -> None:
    target = tmp_path / "atb.dump"
    target.write_bytes(b"precious")
    refused = atb_db("backup", "--url", source_url, "--output", str(target))
    assert refused.exit_code == 1
    assert "exists already" in refused.output
    assert target.read_bytes() == b"precious"
    forced = atb_db("backup", "--url", source_url, "--output", str(target), "--force")
    assert forced.exit_code == 0, forced.output
    assert target.read_bytes().startswith(b"PGDMP")


def test_a_failed_backup_leaves_no_file(pg_server_url: str, tmp_path: Path) -> None:
    missing = url_with_database(pg_server_url, "atb_no_such_database")
    result = atb_db("backup", "--url", missing, "--output", str(tmp_path / "x.dump"))
    assert result.exit_code == 1
    assert list(tmp_path.iterdir()) == []
    assert "Traceback" not in result.output


def test_a_backup_into_missing_folders_creates_them(source_url: str, tmp_path: Path) -> None:
    target = tmp_path / "backups" / "daily" / "atb.dump"
    result = atb_db("backup", "--url", source_url, "--output", str(target))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in target.parent.iterdir()) == ["atb.dump", "atb.dump.sha256"]


def test_an_unreachable_database_creates_no_folder(pg_server_url: str, tmp_path: Path) -> None:
    url = url_with_database(pg_server_url, "atb_no_such_db")
    result = atb_db("backup", "--url", url, "--output", str(tmp_path / "new" / "atb.dump"))
    assert result.exit_code == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kept", [False, True], ids=["new folders", "existing folder"])
def test_a_failed_backup_removes_only_the_folders_it_created(
    kept: bool, source_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atb.db.admin import backup
    from atb.db.errors import ConfigurationError

    if kept:
        (tmp_path / "kept").mkdir()
    target = tmp_path / ("kept" if kept else "new") / "sub" / "atb.dump"

    def failing_backup(settings, output, **kwargs):
        assert output.parent.is_dir()  # created before pg_dump runs
        raise ConfigurationError("pg_dump failed")

    monkeypatch.setattr(backup, "backup_database", failing_backup)
    result = atb_db("backup", "--url", source_url, "--output", str(target))
    assert result.exit_code == 1 and "pg_dump failed" in result.output
    assert [p.name for p in tmp_path.iterdir()] == (["kept"] if kept else [])
    if kept:
        assert list((tmp_path / "kept").iterdir()) == []


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("", "Invalid value for '--output': empty file name; give a file such as backups/atb.dump"),
        ("   ", "Invalid value for '--output': empty file name"),
        ("somewhere/", "Invalid value for '--output': 'somewhere/' is a folder; give a file in it"),
    ],
)
def test_an_empty_or_folder_output_is_a_usage_error(output: str, message: str) -> None:
    result = atb_db("backup", "--url", "postgresql://atb@127.0.0.1:1/atb", "--output", output)
    assert result.exit_code == 2
    assert message in result.output


def test_a_truncated_archive_fails_midway_and_changes_nothing(
    source_url: str, other_url: str, tmp_path: Path
) -> None:
    # Enough data that the table of contents survives the cut and the data does not.
    execute_sql(
        source_url,
        "INSERT INTO system_events (timestamp, event_type, message) "
        "SELECT now(), 'TEST', md5(g::text) || repeat(md5((g * 7)::text), 20) "
        "FROM generate_series(1, 20000) g",
    )
    full = backup_of(source_url, tmp_path / "full.dump")
    data = full.read_bytes()
    before = fingerprint(other_url)
    # Cut inside the data: a full read fails even when the caller skips the checksum.
    cut = tmp_path / "cut.dump"
    cut.write_bytes(data[: int(len(data) * 0.8)])
    unchecked = atb_db("restore", str(cut), "--url", other_url, "--yes")
    assert unchecked.exit_code == 1 and "--no-checksum" in unchecked.output
    result = atb_db("restore", str(cut), "--url", other_url, "--yes", "--no-checksum")
    assert result.exit_code == 1
    assert "not readable" in result.output and "Traceback" not in result.output
    # Cut by a few bytes: pg_restore reads it "in full", only the checksum shows it.
    full.write_bytes(data[:-10])
    tail_cut = atb_db("restore", str(full), "--url", other_url, "--yes")
    assert tail_cut.exit_code == 1 and "does not match its checksum" in tail_cut.output
    assert fingerprint(other_url) == before


def test_a_sql_dump_whose_last_statement_fails_changes_nothing(
    source_url: str, other_url: str, tmp_path: Path
) -> None:
    good = backup_of(source_url, tmp_path / "good.sql.gz")
    bad = tmp_path / "bad.sql.gz"
    with gzip.open(good, "rb") as src, gzip.open(bad, "wb") as dst:
        dst.write(src.read() + b"\nALTER TABLE public.no_such_table ADD COLUMN x int;\n")
    before = fingerprint(other_url)

    result = atb_db("restore", str(bad), "--url", other_url, "--yes", "--no-checksum")

    assert result.exit_code == 1
    assert "no_such_table" in result.output and "rolled back" in result.output
    assert fingerprint(other_url) == before


def test_a_restore_blocked_by_a_dependent_object_changes_nothing(
    source_url: str, other_url: str, tmp_path: Path
) -> None:
    archive = backup_of(source_url, tmp_path / "atb.dump")
    # --clean drops trades without CASCADE; this view makes that drop fail after earlier drops ran.
    execute_sql(other_url, "CREATE VIEW recent_trades AS SELECT id FROM trades")
    before = fingerprint(other_url)

    result = atb_db("restore", str(archive), "--url", other_url, "--yes")

    assert result.exit_code == 1
    assert fingerprint(other_url) == before
    assert execute_sql(other_url, "SELECT count(*) FROM recent_trades") == [(0,)]


def test_restore_asks_first_and_no_changes_nothing(
    source_url: str, other_url: str, tmp_path: Path
) -> None:
    archive = backup_of(source_url, tmp_path / "atb.dump")
    before = fingerprint(other_url)
    result = atb_db("restore", str(archive), "--url", other_url, input="n\n")
    assert result.exit_code == 1
    assert "Continue?" in result.output
    assert fingerprint(other_url) == before
    accepted = atb_db("restore", str(archive), "--url", other_url, input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert fingerprint(other_url) == fingerprint(source_url)


def test_restore_refuses_a_production_database(
    source_url: str, other_url: str, tmp_path: Path
) -> None:
    archive = backup_of(source_url, tmp_path / "atb.dump")
    before = fingerprint(other_url)
    result = atb_db(
        "restore", str(archive), "--url", other_url, "--yes", env={"ATB_ENV": "production"}
    )
    assert result.exit_code == 1
    assert "refusing to restore into" in result.output and "--allow-production" in result.output
    assert fingerprint(other_url) == before


def test_restore_of_something_that_is_not_a_backup_is_one_clear_error(
    other_url: str, tmp_path: Path
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    result = atb_db("restore", str(junk), "--url", other_url, "--yes")
    assert result.exit_code == 1
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert "neither" in error


def test_backup_and_restore_as_subprocesses(
    source_url: str, make_pg_database: Callable[..., str], tmp_path: Path
) -> None:
    archive = tmp_path / "atb.dump"
    backup = atb_subprocess(
        "db", "backup", "--url", source_url, "--output", str(archive), timeout=300
    )
    assert backup.returncode == 0, backup.stderr
    fresh = make_pg_database("atb_cli_fresh")
    restore = atb_subprocess("db", "restore", str(archive), "--url", fresh, "--yes", timeout=300)
    assert restore.returncode == 0, restore.stderr
    assert fingerprint(fresh) == fingerprint(source_url)
