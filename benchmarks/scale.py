"""Thousands of series: the whole monthly flow at 100, 1,000 and 5,000 series, and batched against one-by-one training.

    python benchmarks/scale.py [--sizes 100 1000 5000] [--model lstm] [--preset fast] [--baseline-size 1000]
    python benchmarks/scale.py --stacks     # only the training comparison, by stack size, for both presets

Data: copies of the bundled air-passengers series and the 17 development series (benchmarks/data), each
shortened by 0-36 months at the start, scaled by 0.2-5x and given 2% multiplicative noise (seeded), all
ending in the same month. Each size runs `seqcast run` (Prefect flow, temporary server, thread runner with
2 workers, one model kind) on a fresh data folder in a subprocess. Printed per size:

- wall time and series per second;
- peak memory: the largest sum of the resident memory of the run's process tree, sampled every 0.2 s;
- training share: the seconds spent training networks (model_runs.train_seconds of the run) over the
  machine's time (wall x workers); the rest, "outside training", is orchestration, the Prefect server,
  ingest, Parquet and database I/O, forecasting and plots (and any idle worker);
- CPU outside: the same, over the CPU time the run's processes used (idle cores not counted), and that CPU time
  by process: the run, its training processes (training and the rest of their jobs), the fork server they
  are forked from, and its Prefect server;
- seconds per series, and the marginal cost of each series between two sizes (linear growth keeps it flat).

With --prefect-server, the runs report to one `prefect server` started on loopback, as a deployment's runs
do, instead of each starting a temporary server (about 8 s); the server's CPU time during each run is counted.

With --baseline-size, that size is also run with --one-by-one (the reference training path) side by side.
Then the targets are checked, and finally the training of the same sample of series is timed in this process
both ways, for every model kind: the batched-vs-one-by-one speedup of the training itself.

The default kind is the project's default, lstm. The share outside training is relative: the cheaper the
networks, the larger it is for the same orchestration and I/O (run it with --model rnn to see).
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
    source: Path,
    folder: Path,
    model: str,
    preset: str,
    chunk: int,
    batched: bool,
    server: tuple[str, psutil.Process] | None = None,
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
        "--model",
        model,
        "--preset",
        preset,
        "--workers",
        str(WORKERS),
        "--chunk-size",
        str(chunk),
        "--batched" if batched else "--one-by-one",
        "-q",
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
        (train_seconds,) = conn.execute("SELECT SUM(train_seconds) FROM model_runs").fetchone()
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


def training_speedup(panel: pd.DataFrame, kind: str, preset: str, n_series: int) -> tuple[float, float]:
    """Seconds to fit the holdout models of `n_series` series one by one, then batched (this process, one thread)."""
    from seqcast.config import model_config_for
    from seqcast.models import RecurrentForecaster

    config = model_config_for(kind, preset)
    ids = panel["series_id"].unique()[:n_series]
    ys = [
        g["value"].to_numpy(dtype=np.float64)[:-12] for _, g in panel[panel["series_id"].isin(ids)].groupby("series_id")
    ]
    start = time.perf_counter()
    one = [RecurrentForecaster(config).fit(y, curve=False) for y in ys]
    one_by_one = time.perf_counter() - start
    start = time.perf_counter()
    many = RecurrentForecaster.fit_stacked(config, ys, curve=False)
    batched = time.perf_counter() - start
    worst = max(float(np.max(np.abs(a.predict(12) / b.predict(12) - 1))) for a, b in zip(one, many, strict=True))
    assert worst < 1e-3, f"batched and one-by-one forecasts differ by {worst:.2e}"
    return one_by_one, batched


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


def check_targets(runs: list[tuple[int, str, dict[str, Any]]]) -> None:
    """The issue's targets on this machine, against the batched runs."""
    by_size = {n: r for n, label, r in runs if label == "batched"}

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print("\ntargets")
    for n, limit in ((1000, 180), (5000, 720)):
        if n in by_size:
            wall = by_size[n]["wall"]
            print(f"  {n:,} series under {limit // 60} minutes: {wall:.1f} s, {verdict(wall < limit)}")
    peak = max(r["peak_mib"] for _, _, r in runs)
    print(f"  peak memory under 4 GiB: {peak:,.0f} MiB, {verdict(peak < 4096)}")
    sizes = sorted(by_size)
    marginal = [(by_size[b]["wall"] - by_size[a]["wall"]) / (b - a) for a, b in itertools.pairwise(sizes)]
    if len(marginal) >= 2:
        ratio = max(marginal[1:]) / marginal[0]
        growth = ", then ".join(f"{m:.3f}" for m in marginal)
        print(f"  linear growth: marginal {growth} s per series (ratio {ratio:.2f}), {verdict(0.75 < ratio < 1.33)}")
    for n in sizes:
        if n >= 1000:
            outside = 1 - by_size[n]["train"] / (by_size[n]["wall"] * WORKERS)
            print(f"  share outside training under 20% at {n:,} series: {outside:.0%}, {verdict(outside < 0.2)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--model", default="lstm", choices=["rnn", "lstm", "gru"])
    parser.add_argument("--preset", default="fast", choices=["default", "fast", "tutorial"])
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--baseline-size", type=int, default=1000, help="Also run this size one by one (0: skip).")
    parser.add_argument("--speedup-series", type=int, default=100)
    parser.add_argument("--stacks", action="store_true", help="Only compare training by stack size, both presets.")
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
    print(
        f"seqcast run --model {args.model} --preset {args.preset} --chunk-size {args.chunk_size} "
        f"--workers {WORKERS}; {os.cpu_count()} cores; "
        + ("a running Prefect server" if args.prefect_server else "a temporary Prefect server per run")
    )
    print(
        f"{'series':>7} {'training':>11} {'wall s':>8} {'series/s':>9} {'peak MiB':>9} "
        f"{'train share':>12} {'outside':>8} {'CPU outside':>12} {'s/series':>9} {'marginal s/series':>18}"
    )
    runs: list[tuple[int, str, dict[str, Any]]] = []
    plan = [(n, True) for n in sorted(args.sizes)]
    if args.baseline_size:
        plan.append((args.baseline_size, False))
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="seqcast-scale-")))
        server = None
        if args.prefect_server:
            (tmp / "prefect-home").mkdir()
            server = stack.enter_context(prefect_server(tmp / "prefect-home"))
        for n, batched in plan:
            ids = panel["series_id"].unique()[:n]
            source = tmp / f"panel-{n}.csv"
            panel[panel["series_id"].isin(ids)].to_csv(source, index=False)
            folder = tmp / f"data-{n}-{batched}"
            r = run_flow(source, folder, args.model, args.preset, args.chunk_size, batched, server)
            assert r["published"] == n, f"{r['published']} of {n} series published"
            label = "batched" if batched else "one-by-one"
            previous = [(m, s) for m, lab, s in runs if lab == label and m < n]
            marginal = ""
            if previous:
                m, s = previous[-1]
                marginal = f"{(r['wall'] - s['wall']) / (n - m):.3f}"
            share = r["train"] / (r["wall"] * WORKERS)
            cpu_outside = 1 - r["train"] / r["cpu"]
            print(
                f"{n:>7} {label:>11} {r['wall']:>8.1f} {n / r['wall']:>9.1f} {r['peak_mib']:>9.0f} "
                f"{share:>11.0%} {1 - share:>8.0%} {cpu_outside:>12.0%} {r['wall'] / n:>9.3f} {marginal:>18}",
                flush=True,
            )
            runs.append((n, label, r))
    print(
        "\nCPU seconds by process (sampled every 0.2 s): the training processes' jobs split into the networks' "
        "training and the rest (reading series, writing models, predicting, forecasting, charts); the fork "
        "server loads torch and the pipeline once for them"
    )
    print(
        f"{'series':>7} {'training':>11} {'CPU s':>7} {'training':>9} {'rest of jobs':>13} "
        f"{'fork server':>12} {'run process':>12} {'Prefect server':>15}"
    )
    for n, label, r in runs:
        kinds = r["cpu_by_kind"]
        workers = kinds.get("training", 0.0)
        print(
            f"{n:>7} {label:>11} {r['cpu']:>7.1f} {r['train']:>9.1f} {workers - r['train']:>13.1f} "
            f"{kinds.get('fork server', 0.0):>12.1f} {kinds.get('run', 0.0):>12.1f} {kinds.get('server', 0.0):>15.1f}"
        )
    baseline = [r for n, lab, r in runs if lab == "one-by-one"]
    same = [r for n, lab, r in runs if lab == "batched" and n == args.baseline_size]
    if baseline and same:
        print(
            f"whole flow at {args.baseline_size} series: batched {same[0]['wall']:.1f} s vs one-by-one "
            f"{baseline[0]['wall']:.1f} s ({baseline[0]['wall'] / same[0]['wall']:.2f}x)"
        )

    check_targets(runs)

    print(f"\ntraining only, holdout fits of {args.speedup_series} series, preset {args.preset}, one thread")
    print(f"{'kind':>5} {'one-by-one s':>13} {'batched s':>10} {'speedup':>8}")
    for kind in ("rnn", "gru", "lstm"):
        one, many = training_speedup(panel, kind, args.preset, args.speedup_series)
        print(f"{kind:>5} {one:>13.2f} {many:>10.2f} {one / many:>7.1f}x", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
