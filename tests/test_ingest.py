from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from seqcast import ingest, store
from seqcast.config import DataPaths
from seqcast.ingest import IngestError, parse_file

CLI = [sys.executable, "-m", "seqcast"]


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def env(tmp_path: Path, db_url: str):
    """A data folder and an empty database: every storing test runs on SQLite and on PostgreSQL."""
    paths = DataPaths(tmp_path / "data").create()
    engine = store.open_engine(db_url)
    yield paths, engine
    engine.dispose()


def rows_of(engine: sa.Engine, sql: str) -> list[tuple]:
    """Query through SQLAlchemy; dates as ISO text, as a SQLite consumer sees them."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql)).all()
    return [tuple(v.isoformat() if isinstance(v, date) else v for v in row) for row in rows]


# ------------------------------------------------------------------------------------- accepted forms


def test_two_column_file_takes_series_id_from_stem(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path / "air_passengers.csv", "Month,#Passengers\n1949-01,112\n1949-02,118\n"))
    assert parsed.rows["series_id"].tolist() == ["air_passengers", "air_passengers"]
    assert parsed.rows["period"].dt.strftime("%Y-%m-%d").tolist() == ["1949-01-01", "1949-02-01"]
    assert parsed.rows["value"].tolist() == [112.0, 118.0]


def test_long_and_nixtla_forms_with_extra_columns_and_bom(tmp_path: Path) -> None:
    long = parse_file(write(tmp_path / "a.csv", "\ufeffseries_id,period,value,note\nx,2020-01-15,1.5,hi\n"))
    nixtla = parse_file(write(tmp_path / "b.csv", "unique_id,ds,y\nx,2020-01-01,1.5\n"))
    for parsed in (long, nixtla):
        assert parsed.rows.to_dict("records") == [
            {"series_id": "x", "period": pd.Timestamp("2020-01-01"), "value": 1.5}
        ]


def test_any_day_of_month_normalises_to_first_and_negatives_are_kept(tmp_path: Path) -> None:
    text = "series_id,period,value\na,2020-01-31,-3\na,2020-02-29,0\na,2020-03-01T12:30:00,7\n"
    parsed = parse_file(write(tmp_path / "f.csv", text))
    assert parsed.rows["period"].dt.day.tolist() == [1, 1, 1]
    assert parsed.rows["value"].tolist() == [-3.0, 0.0, 7.0]
    assert parsed.rejected.empty


def test_parquet_with_typed_columns(tmp_path: Path) -> None:
    table = pa.table(
        {
            "series_id": ["p", "p"],
            "period": pa.array([pd.Timestamp("2021-01-10"), pd.Timestamp("2021-02-01")]),
            "value": [1.0, 2.0],
        }
    )
    pq.write_table(table, tmp_path / "p.parquet")
    parsed = parse_file(tmp_path / "p.parquet")
    assert parsed.rows["period"].dt.strftime("%Y-%m").tolist() == ["2021-01", "2021-02"]


def test_configurable_column_names(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "store,month,sales\nA,2020-01,5\n")
    parsed = parse_file(path, columns={"series_id": "store", "period": "month", "value": "sales"})
    assert parsed.rows["series_id"].tolist() == ["A"]


# ------------------------------------------------------------------------------------- row rejects


def test_bad_rows_are_rejected_with_file_row_and_field(tmp_path: Path) -> None:
    text = (
        "series_id,period,value\n"
        "a,2020-01,1\n"  # row 1 ok
        "a,2020-02-30,2\n"  # row 2 impossible date
        "a,not-a-date,3\n"  # row 3
        "a,2020-04,abc\n"  # row 4 not a number
        "a,2020-05,\n"  # row 5 empty value
        "a,2020-06,NaN\n"  # row 6
        "a,2020-07,inf\n"  # row 7
        ",2020-08,8\n"  # row 8 empty id
        "a,2020-09,9\n"  # row 9 ok
    )
    parsed = parse_file(write(tmp_path / "bad.csv", text))
    assert parsed.rows["value"].tolist() == [1.0, 9.0]
    reasons = dict(zip(parsed.rejected["row_number"], parsed.rejected["reason"], strict=False))
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8]
    assert reasons[2].startswith("bad.csv row 2, field 'period'")
    assert "field 'period'" in reasons[3]
    assert "field 'value': not a number" in reasons[4]
    assert "field 'value': empty" in reasons[5]
    assert "field 'value': NaN" in reasons[6]
    assert "field 'value': infinite" in reasons[7]
    assert "field 'series_id': empty" in reasons[8]
    raw = dict(zip(parsed.rejected["row_number"], parsed.rejected["raw"], strict=False))
    assert raw[4] == "a,2020-04,abc"


def test_conflicting_duplicates_keep_neither_exact_duplicates_stored_once(tmp_path: Path) -> None:
    text = "series_id,period,value\na,2020-01,1\na,2020-01,2\nb,2020-01,5\nb,2020-01,5\n"
    parsed = parse_file(write(tmp_path / "dup.csv", text))
    assert parsed.rows.to_dict("records") == [{"series_id": "b", "period": pd.Timestamp("2020-01-01"), "value": 5.0}]
    assert parsed.rejected["row_number"].tolist() == [1, 2]
    assert all("conflicting values" in r and "rows 1, 2" in r for r in parsed.rejected["reason"])


# ------------------------------------------------------------------------------------- file-level errors


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "file is empty"),
        ("header.csv", "series_id,period,value\n", "no data rows"),
        ("nocol.csv", "series_id,period\na,2020-01\n", "missing column 'value'"),
        ("semi.csv", "series_id;period;value\na;2020-01;1\n", "delimiter"),
        ("binary.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("broken.parquet", b"PAR1 this is not really parquet", "Parquet"),
        ("allbad.csv", "series_id,period,value\na,xx,1\n", "no usable rows"),
    ],
)
def test_unusable_files_raise_naming_the_file(tmp_path: Path, name: str, content, message: str) -> None:
    with pytest.raises(IngestError) as info:
        parse_file(write(tmp_path / name, content))
    assert str(info.value).startswith(f"{name}:")
    assert message in str(info.value)


def test_rejected_file_is_archived_and_recorded(env, tmp_path: Path) -> None:
    paths, engine = env
    bad = write(paths.inbox / "bad.csv", "series_id;period;value\na;2020-01;1\n")
    with pytest.raises(IngestError):
        ingest.ingest_file(engine, paths, bad)
    archived = list(paths.archive.iterdir())
    assert len(archived) == 1 and archived[0].read_bytes() == b"series_id;period;value\na;2020-01;1\n"
    assert not bad.exists()  # left the inbox, safe in the archive
    ((status, error),) = rows_of(engine, "SELECT status, error FROM ingest_batches")
    assert status == "rejected" and "bad.csv" in error


# ------------------------------------------------------------------------------------- storing


def test_ingest_stores_counts_and_keeps_received_file(env, tmp_path: Path) -> None:
    paths, engine = env
    src = write(tmp_path / "f.csv", "series_id,period,value\na,2020-01,1\na,2020-02,x\n")
    report = ingest.ingest_file(engine, paths, src)
    assert (report.rows_read, report.rows_inserted, report.rows_rejected) == (2, 1, 1)
    assert src.exists()  # sources outside the inbox are left where they are
    assert [p.read_bytes() for p in paths.archive.iterdir()] == [src.read_bytes()]
    assert rows_of(engine, "SELECT series_id, period, value FROM observations") == [("a", "2020-01-01", 1.0)]
    ((row_number, raw, reason),) = rows_of(engine, "SELECT row_number, raw, reason FROM rejected_rows")
    assert (row_number, raw) == (2, "a,2020-02,x") and "f.csv row 2" in reason


def test_same_file_twice_changes_nothing_and_says_so(env, tmp_path: Path) -> None:
    paths, engine = env
    src = write(tmp_path / "f.csv", "series_id,period,value\na,2020-01,1\n")
    ingest.ingest_file(engine, paths, src)
    _, version = store.store_identity(engine)
    again = ingest.ingest_file(engine, paths, src)
    assert again.status == "duplicate" and "same rows as batch" in (again.error or "")
    assert store.store_identity(engine)[1] == version
    assert rows_of(engine, "SELECT status FROM ingest_batches ORDER BY received_at") == [
        ("applied",),
        ("duplicate",),
    ]
    assert len(list(paths.archive.iterdir())) == 2  # every received file is kept


def test_revision_updates_value_and_records_old_and_new(env, tmp_path: Path) -> None:
    paths, engine = env
    ingest.ingest_file(engine, paths, write(tmp_path / "a.csv", "series_id,period,value\na,2020-01,1\nb,2020-01,7\n"))
    report = ingest.ingest_file(
        engine, paths, write(tmp_path / "b.csv", "series_id,period,value\na,2020-01,1.5\nb,2020-01,7\n")
    )
    assert (report.rows_updated, report.rows_unchanged, report.rows_inserted) == (1, 1, 0)
    assert rows_of(engine, "SELECT value FROM observations WHERE series_id = 'a'") == [(1.5,)]
    assert rows_of(engine, "SELECT series_id, period, old_value, new_value FROM observation_revisions") == [
        ("a", "2020-01-01", 1.0, 1.5)
    ]


def test_hostile_series_ids_are_stored_literally(env, tmp_path: Path) -> None:
    paths, engine = env
    ids = ["it's", 'a "quoted" id', "../../etc/passwd", "x'); DROP TABLE observations; --", "東京/大阪.v2"]
    frame = pd.DataFrame({"series_id": ids, "period": "2020-01", "value": range(len(ids))})
    src = tmp_path / "hostile.csv"
    frame.to_csv(src, index=False)
    ingest.ingest_file(engine, paths, src)
    stored = [r[0] for r in rows_of(engine, "SELECT series_id FROM observations ORDER BY value")]
    assert stored == ids


def test_inbox_files_leave_the_inbox_once_recorded(env) -> None:
    paths, engine = env
    write(paths.inbox / "one.csv", "series_id,period,value\na,2020-01,1\n")
    write(paths.inbox / ".tmp-partial.csv", "series_id,period,value\n")
    reports = ingest.ingest_files(engine, paths, ingest.inbox_files(paths))
    assert [r.status for r in reports] == ["applied"]
    assert [p.name for p in paths.inbox.iterdir()] == [".tmp-partial.csv"]


def test_rows_with_wrong_field_count_are_rejected_one_by_one(tmp_path: Path) -> None:
    text = 'series_id,period,value\na,2020-01,1\na,2020-02,2,3\n"b, c",2020-03,4\na,2020-04\na,2020-05,x\n'
    parsed = parse_file(write(tmp_path / "ragged.csv", text))
    assert parsed.rows["series_id"].tolist() == ["a", "b, c"]
    reasons = dict(zip(parsed.rejected["row_number"], parsed.rejected["reason"], strict=True))
    assert sorted(reasons) == [2, 4, 5]
    assert reasons[2] == "ragged.csv row 2, wrong number of fields: 4, expected 3"
    assert "field 'value'" in reasons[5]
    assert parsed.rows_read == 5


# ------------------------------------------------------------------------------------- nothing received is lost


def test_iso_periods_with_z_or_an_offset_keep_their_wall_clock_month(tmp_path: Path) -> None:
    text = (
        "series_id,period,value\n"
        "a,2020-01-01T00:00:00Z,1\n"
        "a,2020-02-01T00:00:00+01:00,2\n"
        "a,2020-03-31T23:30:00-05:00,3\n"
        "a,2020-04-01 00:00:00+0200,4\n"
    )
    parsed = parse_file(write(tmp_path / "tz.csv", text))
    assert parsed.rejected.empty
    assert parsed.rows["period"].dt.strftime("%Y-%m").tolist() == ["2020-01", "2020-02", "2020-03", "2020-04"]
    same = parse_file(write(tmp_path / "z.csv", "series_id,period,value\na,2020-01-01T00:00:00Z,1\n"))
    assert same.rows["period"].dt.strftime("%Y-%m").tolist() == ["2020-01"]


def test_parquet_timestamps_with_a_time_zone_keep_their_wall_clock_month(tmp_path: Path) -> None:
    months = pd.date_range("2021-01-01", periods=3, freq="MS", tz="Europe/Berlin")  # midnight on the 1st, local
    pq.write_table(pa.table({"series_id": ["b"] * 3, "period": months, "value": [1.0, 2.0, 3.0]}), tmp_path / "b.pq")
    parsed = parse_file(tmp_path / "b.pq")
    assert parsed.rows["period"].dt.strftime("%Y-%m").tolist() == ["2021-01", "2021-02", "2021-03"]


def test_a_repeated_column_name_rejects_the_file_naming_it(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"^rep.csv: column name 'Value' appears more than once"):
        parse_file(write(tmp_path / "rep.csv", "series_id,period,value,Value\na,2020-01,1,2\n"))


def test_parquet_list_and_map_columns(tmp_path: Path) -> None:
    nested_value = pa.table({"series_id": ["a"], "period": ["2020-01"], "value": pa.array([[1, 2]])})
    pq.write_table(nested_value, tmp_path / "lists.parquet")
    with pytest.raises(IngestError, match=r"lists.parquet: column 'value' \(value\) holds"):
        parse_file(tmp_path / "lists.parquet")
    extra = pa.table(
        {
            "series_id": ["a", "a"],
            "period": ["2020-01", "2020-02"],
            "value": ["1", "oops"],
            "tags": pa.array([[("k", "v")], [("k", "w")]], type=pa.map_(pa.string(), pa.string())),
        }
    )
    pq.write_table(extra, tmp_path / "maps.parquet")
    parsed = parse_file(tmp_path / "maps.parquet")  # an extra nested column is ignored; its rows still judged
    assert parsed.rows["value"].tolist() == [1.0]
    assert parsed.rejected["raw"].iloc[0].startswith("a,2020-02,oops,")


def test_control_characters_in_series_ids_are_rejected_row_by_row(env, tmp_path: Path) -> None:
    paths, engine = env
    # A NUL past the first 8 KiB of a CSV (a NUL at its start marks it binary), and in Parquet text.
    filler = "".join(f"ok,{1900 + i // 12}-{i % 12 + 1:02d},1\n" for i in range(1000))
    csv_src = write(tmp_path / "nul.csv", f"series_id,period,value\n{filler}bad\x00id,2020-01,2\n")
    csv_report = ingest.ingest_file(engine, paths, csv_src)
    assert (csv_report.rows_inserted, csv_report.rows_rejected) == (1000, 1)
    src = tmp_path / "nul.parquet"
    pq.write_table(
        pa.table({"series_id": ["ok", "bad\x00id", "two\nlines"], "period": ["2020-01"] * 3, "value": [1.0, 2.0, 3.0]}),
        src,
    )
    report = ingest.ingest_file(engine, paths, src)
    assert (report.status, report.rows_inserted, report.rows_rejected) == ("applied", 1, 2)
    reasons = rows_of(
        engine, f"SELECT row_number, raw, reason FROM rejected_rows WHERE batch_id = '{report.batch_id}' ORDER BY 1"
    )
    assert [r[0] for r in reasons] == [2, 3]
    assert reasons[0][1] == "bad\\x00id,2020-01,2.0"  # stored, NUL escaped (PostgreSQL refuses a NUL in text)
    assert all("field 'series_id': holds a control character" in r[2] for r in reasons)


def test_an_unexpected_error_is_a_failed_batch_and_the_file_stays_in_the_inbox(
    env, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, engine = env
    src = write(paths.inbox / "f.csv", "series_id,period,value\na,2020-01,1\n")

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away\nwith a second line")

    monkeypatch.setattr(store, "apply_batch", broken)
    (report,) = ingest.ingest_files(engine, paths, ingest.inbox_files(paths))
    assert report.status == "failed" and src.exists()
    assert report.error == (
        "f.csv: not ingested (RuntimeError: the database went away); the file is left in the inbox, and the next "
        "run tries again"
    )
    assert rows_of(engine, "SELECT status, error FROM ingest_batches") == [("failed", report.error)]
    monkeypatch.undo()
    (again,) = ingest.ingest_files(engine, paths, ingest.inbox_files(paths))
    assert again.status == "applied" and not src.exists()
    assert rows_of(engine, "SELECT series_id, value FROM observations") == [("a", 1.0)]


def test_an_interrupt_during_ingest_leaves_the_file_in_the_inbox(env, monkeypatch: pytest.MonkeyPatch) -> None:
    paths, engine = env
    src = write(paths.inbox / "f.csv", "series_id,period,value\na,2020-01,1\n")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "apply_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ingest.ingest_files(engine, paths, ingest.inbox_files(paths))
    assert src.read_text() == "series_id,period,value\na,2020-01,1\n"
    assert rows_of(engine, "SELECT COUNT(*) FROM ingest_batches") == [(0,)]


def test_the_same_numbers_under_another_series_id_are_new_rows(env, tmp_path: Path) -> None:
    paths, engine = env
    text = "Month,#Passengers\n1949-01,112\n1949-02,118\n"
    first = ingest.ingest_file(engine, paths, write(tmp_path / "north.csv", text))
    other_name = ingest.ingest_file(engine, paths, write(tmp_path / "south.csv", text))
    other_id = ingest.ingest_file(engine, paths, tmp_path / "north.csv", series_id="east")
    same = ingest.ingest_file(engine, paths, tmp_path / "north.csv")
    assert [r.status for r in (first, other_name, other_id, same)] == ["applied", "applied", "applied", "duplicate"]
    assert [r.series for r in (first, other_name, other_id)] == [("north",), ("south",), ("east",)]
    assert rows_of(engine, "SELECT series_id, COUNT(*) FROM observations GROUP BY series_id ORDER BY 1") == [
        ("east", 2),
        ("north", 2),
        ("south", 2),
    ]


def test_links_and_folders_in_the_inbox_are_refused_and_moved_out(env, tmp_path: Path) -> None:
    paths, engine = env
    secret = write(tmp_path / "secret.csv", "series_id,period,value\nsecret-line,2020-01,1\n")
    (paths.inbox / "link.csv").symlink_to(secret)
    (paths.inbox / "dangling.csv").symlink_to(tmp_path / "nowhere.csv")
    (paths.inbox / "folder.csv").mkdir()
    reports = ingest.ingest_files(engine, paths, ingest.inbox_files(paths))
    assert sorted(r.status for r in reports) == ["refused"] * 3
    assert all("\n" not in (r.error or "") and "secret-line" not in (r.error or "") for r in reports)
    assert list(paths.inbox.iterdir()) == []
    moved = sorted(p.name.split("-", 3)[-1] for p in paths.refused.iterdir())
    assert [name.rsplit("-", 1)[0] for name in moved] == ["dangling", "folder", "link"]
    assert list(paths.archive.iterdir()) == []  # nothing a link points to is copied
    assert secret.read_text().startswith("series_id")  # and the target is untouched
    assert rows_of(engine, "SELECT COUNT(*) FROM observations") == [(0,)]
    assert ingest.ingest_files(engine, paths, ingest.inbox_files(paths)) == []  # not refused again next run


def test_a_long_file_name_extension_is_archived_under_a_short_name(env) -> None:
    paths, engine = env
    src = write(paths.inbox / ("data." + "x" * 240), "series_id,period,value\na,2020-01,1\n")
    report = ingest.ingest_file(engine, paths, src)
    assert report.status == "applied" and not src.exists()
    (archived,) = paths.archive.iterdir()
    assert len(archived.name) < 100 and archived.read_bytes() == b"series_id,period,value\na,2020-01,1\n"


def test_a_row_longer_than_a_mebibyte_is_judged_on_its_own(env, tmp_path: Path) -> None:
    paths, engine = env
    huge = "h" * (2 << 20)
    src = write(tmp_path / "long.csv", f"series_id,period,value\na,2020-01,1\n{huge},2020-01,2\na,2020-02,3\n")
    report = ingest.ingest_file(engine, paths, src)
    assert (report.status, report.rows_inserted, report.rows_rejected) == ("applied", 2, 1)
    ((raw, reason),) = rows_of(engine, "SELECT raw, reason FROM rejected_rows")
    assert "longer than 255 characters" in reason and len(raw) < 3000 and raw.endswith("characters)")


def test_a_wholly_rejected_file_still_records_its_rejected_rows(env, tmp_path: Path) -> None:
    paths, engine = env
    with pytest.raises(IngestError, match="no usable rows"):
        ingest.ingest_file(engine, paths, write(tmp_path / "bad.csv", "series_id,period,value\na,xx,1\nb,2020-01,\n"))
    assert rows_of(engine, "SELECT status, rows_read, rows_rejected FROM ingest_batches") == [("rejected", 2, 2)]
    assert [r[0] for r in rows_of(engine, "SELECT row_number FROM rejected_rows ORDER BY 1")] == [1, 2]


def test_a_file_that_revises_every_stored_value_records_each_revision(env, tmp_path: Path) -> None:
    paths, engine = env
    frame = pd.DataFrame({"series_id": ["a"] * 3 + ["b"] * 3, "period": ["2020-01", "2020-02", "2020-03"] * 2})
    ingest.ingest_file(engine, paths, write(tmp_path / "v1.csv", frame.assign(value=range(6)).to_csv(index=False)))
    revised = frame.assign(value=[10, 1, 12, 13, 14, 15])._append(
        {"series_id": "c", "period": "2020-01", "value": 7}, ignore_index=True
    )
    report = ingest.ingest_file(engine, paths, write(tmp_path / "v2.csv", revised.to_csv(index=False)))
    assert (report.rows_inserted, report.rows_updated, report.rows_unchanged) == (1, 5, 1)
    assert rows_of(engine, "SELECT series_id, value FROM observations ORDER BY series_id, period") == [
        ("a", 10.0), ("a", 1.0), ("a", 12.0), ("b", 13.0), ("b", 14.0), ("b", 15.0), ("c", 7.0)
    ]  # fmt: skip
    revisions = rows_of(engine, "SELECT series_id, period, old_value, new_value FROM observation_revisions")
    assert sorted(revisions) == [
        ("a", "2020-01-01", 0.0, 10.0), ("a", "2020-03-01", 2.0, 12.0), ("b", "2020-01-01", 3.0, 13.0),
        ("b", "2020-02-01", 4.0, 14.0), ("b", "2020-03-01", 5.0, 15.0),
    ]  # fmt: skip


def test_files_written_follow_the_umask(env, tmp_path: Path) -> None:
    import os

    from seqcast import lake
    from seqcast._files import atomic_write

    paths, engine = env
    old = os.umask(0o027)
    try:
        ingest.ingest_file(engine, paths, write(tmp_path / "f.csv", "series_id,period,value\na,2020-01,1\n"))
        refs = lake.snapshot(store.load_observations(engine), paths.lake)
        page = atomic_write(paths.reports / "page.html", lambda tmp: tmp.write_text("x"))
    finally:
        os.umask(old)
    for path in [*paths.archive.iterdir(), Path(refs[0].path), page]:
        assert path.stat().st_mode & 0o777 == 0o640, path


def _panel_text(series: int, months: int) -> str:
    lines = ["series_id,period,value"]
    for s in range(series):
        lines += [f"s{s:03d},{1800 + m // 12}-{m % 12 + 1:02d}-01,{(s * 7 + m) % 97 + 0.5}" for m in range(months)]
    return "\n".join(lines) + "\n"


def test_a_full_disk_at_the_database_write_loses_no_file(tmp_path: Path) -> None:
    from tests.conftest import mounted_tmpfs

    with mounted_tmpfs(tmp_path / "small", "3m") as small:
        data = small / "data"
        (data / "inbox").mkdir(parents=True)
        src = write(data / "inbox" / "big.csv", _panel_text(10, 3000))  # about 1 MB; its rows need more
        done = subprocess.run(
            [*CLI, "ingest", str(src), "--data-dir", str(data)], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 1, done.stdout + done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("error: big.csv: not ingested (") and "full" in line and "left in the inbox" in line
        assert src.exists()  # kept, for the next try
        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        again = subprocess.run(
            [*CLI, "ingest", str(src), "--data-dir", str(data)], capture_output=True, text=True, timeout=300
        )
        assert again.returncode == 0, again.stderr
        assert "30000 rows read, 30000 new" in again.stdout and not src.exists()
        with sqlite3.connect(data / "seqcast.db") as conn:
            assert conn.execute("SELECT COUNT(*) FROM observations").fetchone() == (30000,)


def test_a_database_that_goes_away_mid_ingest_loses_no_file(tmp_path: Path, postgres_server: str) -> None:
    import threading
    import time

    from tests.conftest import fresh_pg_database

    paths = DataPaths(tmp_path / "data").create()
    src = write(paths.inbox / "big.csv", _panel_text(100, 3000))
    with fresh_pg_database(postgres_server) as url:
        engine = store.engine(url)
        database = sa.engine.make_url(url).database
        admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
        killed = threading.Event()

        def kill_when_writing() -> None:
            # Waits for the ingest's own statement to be running, then ends every session of that database.
            deadline = time.monotonic() + 300
            with admin.connect() as conn:
                while time.monotonic() < deadline and not killed.is_set():
                    found = conn.execute(
                        sa.text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db "
                            "AND query ILIKE 'INSERT INTO observations%' AND state = 'active'"
                        ),
                        {"db": database},
                    ).all()
                    if found:
                        killed.set()

        killer = threading.Thread(target=kill_when_writing)
        killer.start()
        try:
            reports = ingest.ingest_files(engine, paths, ingest.inbox_files(paths))
        finally:
            killed.set()
            killer.join()
        assert [r.status for r in reports] == ["failed"]
        assert "the file is left in the inbox" in (reports[0].error or "") and src.exists()
        # The database is back (a new connection): the next run ingests the file whole.
        (report,) = ingest.ingest_files(engine, paths, ingest.inbox_files(paths))
        assert (report.status, report.rows_inserted) == ("applied", 300_000) and not src.exists()
        assert store.count_observations(engine) == 300_000
        store.dispose(url)
        admin.dispose()
