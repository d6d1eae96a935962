"""Thousands of series: `seqcast run` with no flags (the product's default) at 100, 1,000 and 5,000 series.

    python benchmarks/scale.py [--sizes 100 1000 5000] [--also "--preset local"] [--prefect-server]
    python benchmarks/scale.py --stacks     # training only: per-series networks by stack size (local presets)

Data: copies of the bundled air-passengers series and the 17 development series (benchmarks/data), each
shortened by 0-36 months at the start, scaled by 0.2-5x and given 2% multiplicative noise (seeded), all
ending in the same month. Each size runs `seqcast run --source FILE --data-dir DIR -q` (Prefect flow, a temporary
server, the default settings) on a fresh data folder in a subprocess. Printed per size: wall time, series per
second, peak memory (the largest sum of the resident memory of the run's process tree, sampled every 0.2 s,
shared pages counted in each process: an upper bound), CPU seconds by process, seconds per series and the
marginal cost of each series between two sizes (linear growth keeps it flat).

Beside it, in the same run: statsforecast's AutoETS alone on the same series (fit and forecast, no validation,
no database, two processes): what "one line of statsforecast" costs. `--also ARGS` runs the sizes again with
extra `seqcast run` options (a lighter setting is reported beside the default, never instead of it). With
--prefect-server, the runs report to one `prefect server` on loopback, as a deployment's runs do.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

HERE = Path(__file__).parent
ROOT = HERE.parent
WORKERS = 2


def make_panel(n: int, seed: int = 0) -> pd.DataFrame:
    """`n` series in the long form: shortened, scaled, noised copies of the real monthly series."""
    from seqcast.ingest import bundled_series_path, parse_file

    bases = pd.concat([parse_file(bundled_series_path()).rows, parse_file(HERE / "data" / "dev_monthly.csv").rows])
    shapes = [g.sort_values("period")["value"].to_numpy(dtype=np.float64) for _, g in bases.groupby("series_id")]
    rng = np.random.default_rng(seed)
    end = pd.Timestamp("2024-12-01")
    frames = []
    for i in range(n):
        base = shapes[i % len(shapes)]
        values = base[int(rng.integers(0, 37)) :] * rng.uniform(0.2, 5.0)
        values = values * np.exp(rng.normal(0.0, 0.02, len(values)))
        periods = pd.date_range(end=end, periods=len(values), freq="MS").strftime("%Y-%m")
        frames.append(pd.DataFrame({"series_id": f"series-{i:05d}", "period": periods, "value": values.round(3)}))
    return pd.concat(frames, ignore_index=True)


def _tree(process: psutil.Process) -> list[psutil.Process]:
    return [process, *process.children(recursive=True)]


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class ProcessTree:
    """Samples a process and all its descendants every 0.2 s: the largest total resident memory, and the CPU
    time of each process (its last sample), by kind: the run itself, its training processes, its Prefect server.

    `server` is a running Prefect server's process, if the run reports to one: its tree is sampled too, and
    only the CPU time it uses while the run lasts is counted.
    """

    def __init__(self, pid: int, server: psutil.Process | None = None) -> None:
        self.process = psutil.Process(pid)
        self.server = server
        self.peak = 0
        self.cpu: dict[int, float] = {}
        self.kinds: dict[int, str] = {}
        self._before: dict[int, float] = {}
        #: Processes the run does not wait for (its fork server and the workers forked from it): their CPU time
        #: is not in the run's RUSAGE_CHILDREN, only in these samples.
        self.unwaited: set[int] = set()
        if server is not None:
            for p in _tree(server):
                with contextlib.suppress(psutil.Error):
                    self._before[p.pid] = _cpu(p)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _kind(self, process: psutil.Process) -> str:
        if process.pid == self.process.pid:
            return "run"
        if process.pid in self._before:
            return "server"
        command = " ".join(process.cmdline())
        if "forkserver" in command:  # the fork server (the run's child) and the workers forked from it
            self.unwaited.add(process.pid)
            return "fork server" if process.ppid() == self.process.pid else "training"
        return "training" if "spawn_main" in command else "server" if "uvicorn" in command else "other"

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                processes = _tree(self.process) + (_tree(self.server) if self.server is not None else [])
                for p in processes:
                    with contextlib.suppress(psutil.Error):  # a child that just ended
                        total += p.memory_info().rss
                        self.cpu[p.pid] = _cpu(p) - self._before.get(p.pid, 0.0)
                        if p.pid not in self.kinds:
                            self.kinds[p.pid] = self._kind(p)
            except psutil.Error:
                break
            self.peak = max(self.peak, total)
            self._stop.wait(0.2)

    def cpu_by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, seconds in self.cpu.items():
            out[self.kinds[pid]] = out.get(self.kinds[pid], 0.0) + seconds
        return out

    def unwaited_cpu(self) -> float:
        return sum(seconds for pid, seconds in self.cpu.items() if pid in self.unwaited)

    def server_cpu(self) -> float:
        """CPU seconds of the running server's processes during the run (0 without one)."""
        return sum(seconds for pid, seconds in self.cpu.items() if pid in self._before)

    def __enter__(self) -> ProcessTree:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def prefect_server(folder: Path) -> Iterator[tuple[str, psutil.Process]]:
    """A `prefect server` on a free loopback port with its own home in `folder`: its API URL and process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(folder), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).with_name("prefect")
    with open(folder / "server.log", "w") as log:
        proc = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"prefect server did not start; see {folder / 'server.log'}")
                time.sleep(0.5)
            yield url, psutil.Process(proc.pid)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run_flow(
    source: Path, folder: Path, extra: list[str], server: tuple[str, psutil.Process] | None = None
) -> dict[str, Any]:
    """One `seqcast run` in a subprocess (reporting to `server`, else to its own temporary server); wall time,
    peak memory, CPU time and the run's training seconds."""
    command = [
        str(Path(sys.executable).with_name("seqcast")),
        "run",
        "--source",
        str(source),
        "--data-dir",
        str(folder),
        "-q",
        *extra,
    ]
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    if server is not None:
        env["PREFECT_API_URL"] = server[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with (
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc,
        ProcessTree(proc.pid, server[1] if server is not None else None) as tree,
    ):
        out, err = proc.communicate()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # every waited-for process of the run's tree
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) + tree.server_cpu()
    cpu += tree.unwaited_cpu()
    if proc.returncode != 0:
        raise SystemExit(f"seqcast run failed ({proc.returncode}):\n{out[-2000:]}\n{err[-4000:]}")
    with sqlite3.connect(folder / "seqcast.db") as conn:
        (train_seconds,) = conn.execute("SELECT COALESCE(SUM(train_seconds), 0) FROM model_runs").fetchone()
        (published,) = conn.execute("SELECT COUNT(DISTINCT series_id) FROM latest_forecasts").fetchone()
        (status,) = conn.execute("SELECT status FROM pipeline_runs").fetchone()
    assert status == "completed", status
    return {
        "wall": wall,
        "cpu": cpu,
        "peak_mib": tree.peak / 2**20,
        "cpu_by_kind": tree.cpu_by_kind(),
        "train": float(train_seconds),
        "published": published,
    }


def stack_sizes(panel: pd.DataFrame, n_series: int) -> None:
    """One by one against batched with several stack budgets (`seqcast.batched.STACK_ELEMENTS`), per preset and
    kind, holdout fits of `n_series` series in this process, one thread."""
    import torch

    from seqcast import batched
    from seqcast.config import model_config_for
    from seqcast.models import RecurrentForecaster

    torch.set_num_threads(1)
    budgets = [128 * 1024, 256 * 1024, 512 * 1024]
    ids = panel["series_id"].unique()[:n_series]
    ys = [
        g["value"].to_numpy(dtype=np.float64)[:-12] for _, g in panel[panel["series_id"].isin(ids)].groupby("series_id")
    ]
    print(f"training only, holdout fits of {n_series} series, one thread; batched by stack budget (elements)")
    print(f"{'preset':>8} {'kind':>5} {'one-by-one s':>13}" + "".join(f"{f'{b // 1024}k s':>16}" for b in budgets))
    default = batched.STACK_ELEMENTS
    try:
        for preset in ("fast", "default"):
            for kind in ("rnn", "gru", "lstm"):
                config = model_config_for(kind, preset)
                start = time.perf_counter()
                for y in ys:
                    RecurrentForecaster(config).fit(y, curve=False)
                one = time.perf_counter() - start
                cells = []
                for budget in budgets:
                    batched.STACK_ELEMENTS = budget
                    start = time.perf_counter()
                    RecurrentForecaster.fit_stacked(config, ys, curve=False)
                    seconds = time.perf_counter() - start
                    cells.append(f"{seconds:>8.2f} ({one / seconds:.2f}x)")
                print(f"{preset:>8} {kind:>5} {one:>13.2f}" + "".join(f"{c:>16}" for c in cells), flush=True)
    finally:
        batched.STACK_ELEMENTS = default


def statsforecast_baseline(source: Path) -> dict[str, float]:
    """AutoETS alone on every series of `source` (fit and forecast 12 months), in WORKERS processes: wall time."""
    code = f"""
import sys, time, warnings
import pandas as pd
from concurrent.futures import ProcessPoolExecutor
from statsforecast.models import AutoETS
def one(y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoETS(season_length=12).forecast(y=y, h=12)["mean"]
if __name__ == "__main__":
    start = time.perf_counter()
    frame = pd.read_csv({str(source)!r})
    series = [g["value"].to_numpy(dtype=float) for _, g in frame.groupby("series_id")]
    with ProcessPoolExecutor({WORKERS}) as pool:
        list(pool.map(one, series, chunksize=16))
    print(time.perf_counter() - start)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {"wall": float(out.stdout.strip().splitlines()[-1])}


def check_targets(runs: dict[int, dict[str, Any]]) -> None:
    """The targets on this machine, for the default settings."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print("\ntargets (default settings)")
    for n, limit in ((1000, 180), (5000, 720)):
        if n in runs:
            wall = runs[n]["wall"]
            print(f"  {n:,} series in at most {limit // 60} minutes: {wall:.1f} s, {verdict(wall <= limit)}")
    peak = max(r["peak_mib"] for r in runs.values())
    print(f"  peak memory under 4 GiB: {peak:,.0f} MiB, {verdict(peak < 4096)}")
    sizes = sorted(runs)
    marginal = [(runs[b]["wall"] - runs[a]["wall"]) / (b - a) for a, b in itertools.pairwise(sizes)]
    if len(marginal) >= 2:
        growth = ", then ".join(f"{m:.3f}" for m in marginal)
        print(f"  marginal seconds per series: {growth}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--also", default="", help="Also run every size with these `seqcast run` options.")
    parser.add_argument("--speedup-series", type=int, default=100)
    parser.add_argument("--stacks", action="store_true", help="Only compare per-series training by stack size.")
    parser.add_argument(
        "--prefect-server",
        action="store_true",
        help="Start a `prefect server` on loopback and run against it (a deployment's setting), instead of each "
        "run starting its own temporary server.",
    )
    args = parser.parse_args()

    panel = make_panel(max(args.sizes))
    if args.stacks:
        stack_sizes(panel, args.speedup_series)
        return
    settings = [("default", [])] + ([(args.also, args.also.split())] if args.also else [])
    print(
        f"seqcast run (no flags: the default settings); {os.cpu_count()} cores; "
        + ("a running Prefect server" if args.prefect_server else "a temporary Prefect server per run")
    )
    print(
        f"{'series':>7} {'settings':>16} {'wall s':>8} {'series/s':>9} {'peak MiB':>9} {'CPU s':>7} "
        f"{'s/series':>9} {'marginal':>9} {'AutoETS alone s':>16} {'ratio':>6}"
    )
    runs: dict[str, dict[int, dict[str, Any]]] = {label: {} for label, _ in settings}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="seqcast-scale-")))
        server = None
        if args.prefect_server:
            (tmp / "prefect-home").mkdir()
            server = stack.enter_context(prefect_server(tmp / "prefect-home"))
        for n in sorted(args.sizes):
            ids = panel["series_id"].unique()[:n]
            source = tmp / f"panel-{n}.csv"
            panel[panel["series_id"].isin(ids)].to_csv(source, index=False)
            baseline = statsforecast_baseline(source)
            for label, extra in settings:
                folder = tmp / f"data-{n}-{len(runs[label])}-{label.replace(' ', '_')}"
                r = run_flow(source, folder, extra, server)
                assert r["published"] == n, f"{r['published']} of {n} series published"
                previous = [m for m in runs[label] if m < n]
                marginal = (
                    f"{(r['wall'] - runs[label][previous[-1]]['wall']) / (n - previous[-1]):.3f}" if previous else ""
                )
                print(
                    f"{n:>7} {label:>16} {r['wall']:>8.1f} {n / r['wall']:>9.1f} {r['peak_mib']:>9.0f} "
                    f"{r['cpu']:>7.1f} {r['wall'] / n:>9.3f} {marginal:>9} {baseline['wall']:>16.1f} "
                    f"{r['wall'] / baseline['wall']:>5.1f}x",
                    flush=True,
                )
                runs[label][n] = r
    print("\nCPU seconds by process (sampled every 0.2 s)")
    print(
        f"{'series':>7} {'settings':>16} {'CPU s':>7} {'training processes':>19} {'fork server':>12} {'run':>7} "
        f"{'Prefect server':>15}"
    )
    for label, by_size in runs.items():
        for n, r in by_size.items():
            kinds = r["cpu_by_kind"]
            print(
                f"{n:>7} {label:>16} {r['cpu']:>7.1f} {kinds.get('training', 0.0):>19.1f} "
                f"{kinds.get('fork server', 0.0):>12.1f} {kinds.get('run', 0.0):>7.1f} "
                f"{kinds.get('server', 0.0):>15.1f}"
            )
    check_targets(runs["default"])


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
