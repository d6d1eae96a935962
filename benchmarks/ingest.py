"""Ingest speed and memory: seqcast's validated ingest against plain pandas read_csv + to_sql, same rows.

    python benchmarks/ingest.py [--series 10000] [--months 100]

Each measurement runs in a fresh subprocess so peak memory (ru_maxrss) is its own. Prints rows per second,
seconds and peak memory for each, and seqcast's speed as a ratio of the baseline's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_data(folder: Path, n_series: int, months: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    periods = pd.date_range("2010-01-01", periods=months, freq="MS").strftime("%Y-%m-%d")
    frame = pd.DataFrame(
        {
            "series_id": np.repeat([f"store-{i:05d}" for i in range(n_series)], months),
            "period": np.tile(periods, n_series),
            "value": rng.gamma(5.0, 40.0, n_series * months).round(2),
        }
    )
    csv, parquet = folder / "panel.csv", folder / "panel.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)
    return csv, parquet


def _measure(kind: str, source: str, workdir: str) -> dict:
    """Runs inside the subprocess."""
    start = time.perf_counter()
    if kind == "baseline":
        import sqlalchemy as sa

        engine = sa.create_engine(f"sqlite:///{workdir}/baseline.db")
        frame = pd.read_csv(source)
        frame.to_sql("observations", engine, index=False, if_exists="append", chunksize=50_000)
        rows = len(frame)
    else:
        from seqcast import ingest, store
        from seqcast.config import DataPaths

        paths = DataPaths(Path(workdir) / "data").create()
        engine = store.open_engine(f"sqlite:///{paths.database}")
        report = ingest.ingest_file(engine, paths, Path(source))
        rows = report.rows_inserted
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    return {"rows": rows, "seconds": seconds, "peak_mib": peak}


def run(kind: str, source: Path) -> dict:
    with tempfile.TemporaryDirectory() as workdir:
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(source), workdir],
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=100)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(*args.child)))
        return
    with tempfile.TemporaryDirectory() as folder:
        csv, parquet = make_data(Path(folder), args.series, args.months)
        results = {
            "pandas read_csv + to_sql (baseline)": run("baseline", csv),
            "seqcast ingest, CSV": run("seqcast", csv),
            "seqcast ingest, Parquet": run("seqcast", parquet),
        }
    base = results["pandas read_csv + to_sql (baseline)"]
    n = args.series * args.months
    print(f"ingest of {n:,} rows ({args.series:,} series x {args.months} months) into SQLite")
    print(f"{'':38} {'rows/s':>10} {'seconds':>8} {'peak MiB':>9} {'speed vs baseline':>18}")
    for name, r in results.items():
        assert r["rows"] == n, f"{name}: stored {r['rows']} rows, expected {n}"
        ratio = base["seconds"] / r["seconds"]
        print(
            f"{name:38} {r['rows'] / r['seconds']:>10,.0f} {r['seconds']:>8.2f} {r['peak_mib']:>9.0f} {ratio:>17.2f}x"
        )


if __name__ == "__main__":
    main()
