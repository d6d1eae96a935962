"""The SQL side: the schema (`schema`, built by the migrations), engines (`engine`), writes and reads.

    from seqcast import store
    engine = store.engine(url)          # one per URL and process, schema migrated on first use
    store.apply_batch(engine, ...)      # writes: one transaction each
    store.load_observations(engine)     # reads

Everything untrusted (series ids, file names) is bound as a parameter; no SQL is built from data.
"""

from __future__ import annotations

from seqcast.store.engine import HEAD, dispose, engine, reader, redacted, sqlite_url
from seqcast.store.reads import (
    count_batches,
    count_observations,
    known_model_ids,
    latest,
    latest_published,
    load_observations,
    past_forecasts,
    read_query,
    read_table,
    run_outcome,
    run_page_frames,
    runs_overview,
    select_rows,
    store_identity,
)
from seqcast.store.writes import (
    BatchCounts,
    RunRows,
    apply_batch,
    as_date,
    finish_run,
    insert,
    record_batch,
    replace_outcomes,
    rows_digest,
    start_run,
    storable_text,
    utcnow,
    write_backtest,
    write_run,
)

#: Older name of `engine`.
open_engine = engine

__all__ = [
    "HEAD",
    "BatchCounts",
    "RunRows",
    "apply_batch",
    "as_date",
    "count_batches",
    "count_observations",
    "dispose",
    "engine",
    "finish_run",
    "insert",
    "known_model_ids",
    "latest",
    "latest_published",
    "load_observations",
    "open_engine",
    "past_forecasts",
    "read_query",
    "read_table",
    "reader",
    "record_batch",
    "redacted",
    "replace_outcomes",
    "rows_digest",
    "run_outcome",
    "run_page_frames",
    "runs_overview",
    "select_rows",
    "sqlite_url",
    "start_run",
    "storable_text",
    "store_identity",
    "utcnow",
    "write_backtest",
    "write_run",
]
