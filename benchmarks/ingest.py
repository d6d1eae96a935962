"""Ingest speed and memory: seqcast's validated ingest against plain pandas read_csv + to_sql, same rows; and a
full revision (a second file changing every stored value) against the first load of the same size.

    python benchmarks/ingest.py [--series 10000] [--months 100]

Each measurement runs in a fresh subprocess so peak memory (ru_maxrss) is its own. Prints rows per second,
seconds and peak memory for each, seqcast's speed as a ratio of the baseline's, and the revision's time and
memory as ratios of the first load's (the target: within 2x).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_data(folder: Path, n_series: int, months: int) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    periods = pd.date_range("2010-01-01", periods=months, freq="MS").strftime("%Y-%m-%d")
    frame = pd.DataFrame(
        {
            "series_id": np.repeat([f"store-{i:05d}" for i in range(n_series)], months),
            "period": np.tile(periods, n_series),
            "value": rng.gamma(5.0, 40.0, n_series * months).round(2),
        }
    )
    csv, parquet, revised = folder / "panel.csv", folder / "panel.parquet", folder / "revised.csv"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)
    frame.assign(value=frame["value"] + 0.5).to_csv(revised, index=False)  # every value revised
    return csv, parquet, revised


def _measure(kind: str, source: str, workdir: str) -> dict[str, float]:
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
        engine = store.engine(store.sqlite_url(paths.database))
        report = ingest.ingest_file(engine, paths, Path(source))
        rows = report.rows_inserted if kind == "seqcast" else report.rows_updated
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    return {"rows": rows, "seconds": seconds, "peak_mib": peak}


def run(kind: str, source: Path, workdir: Path | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(source), str(workdir or scratch)],
            check=True,
            capture_output=True,
            text=True,
        )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


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
        csv, parquet, revised = make_data(Path(folder), args.series, args.months)
        loaded = Path(folder) / "loaded"
        results = {
            "pandas read_csv + to_sql (baseline)": run("baseline", csv),
            "seqcast ingest, CSV": run("seqcast", csv, loaded),
            "seqcast ingest, Parquet": run("seqcast", parquet),
            "seqcast ingest, CSV revising every value": run("revision", revised, loaded),
        }
        shutil.rmtree(loaded, ignore_errors=True)
    base = results["pandas read_csv + to_sql (baseline)"]
    n = args.series * args.months
    print(f"ingest of {n:,} rows ({args.series:,} series x {args.months} months) into SQLite")
    print(f"{'':42} {'rows/s':>10} {'seconds':>8} {'peak MiB':>9} {'speed vs baseline':>18}")
    for name, r in results.items():
        assert r["rows"] == n, f"{name}: stored {r['rows']} rows, expected {n}"
        ratio = base["seconds"] / r["seconds"]
        print(
            f"{name:42} {r['rows'] / r['seconds']:>10,.0f} {r['seconds']:>8.2f} {r['peak_mib']:>9.0f} {ratio:>17.2f}x"
        )
    first, again = results["seqcast ingest, CSV"], results["seqcast ingest, CSV revising every value"]
    time_ratio, memory_ratio = again["seconds"] / first["seconds"], again["peak_mib"] / first["peak_mib"]
    verdict = "met" if time_ratio <= 2 and memory_ratio <= 2 else "MISSED"
    print(
        f"full revision against the first load: {time_ratio:.2f}x the time, {memory_ratio:.2f}x the memory "
        f"(target: within 2x): {verdict}"
    )


if __name__ == "__main__":
    main()
