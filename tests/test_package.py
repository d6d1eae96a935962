from __future__ import annotations

import subprocess
import sys

import seqcast


def test_every_public_name_resolves() -> None:
    for name in seqcast.__all__:
        assert getattr(seqcast, name) is not None


def test_importing_the_package_does_not_load_torch() -> None:
    code = "import sys, seqcast, seqcast.ingest, seqcast.store; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_library_runs_the_whole_pipeline_with_prefect_blocked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A finder that refuses `prefect` (and prefect_dask) before anything is imported: seqcast never needs it.
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("prefect", "prefect_dask"):
            raise ImportError("prefect is blocked in this test")
        return None
sys.meta_path.insert(0, Block())
import pkgutil, importlib, seqcast
for module in pkgutil.walk_packages(seqcast.__path__, "seqcast."):
    importlib.import_module(module.name)
from seqcast.config import RunConfig
from seqcast.pipeline import run_pipeline
config = RunConfig(data_dir={str(tmp_path / "data")!r}, models=["fake"], statistical=["ets", "ces"],
                   use_bundled_demo=True)
outcome = run_pipeline(config)
print(outcome.trained, len(outcome.forecasts), any(m.startswith("prefect") for m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "('air_passengers',) 12 False"
