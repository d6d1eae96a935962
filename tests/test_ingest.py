from __future__ import annotations

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
