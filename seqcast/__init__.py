"""seqcast: monthly recurrent-network forecasts, retrained when data changes, published to SQL tables.

The public API is named in `__all__`; names are imported on first use, so that `import seqcast` (and the
command line's light commands) stay fast and torch is only loaded by what trains or forecasts.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

# A library logs; the application decides where records go (the CLI prints its own lines, Prefect ships them).
logging.getLogger("seqcast").addHandler(logging.NullHandler())

__version__ = "0.1.0"

_EXPORTS = {
    "RunConfig": "seqcast.config",
    "ModelConfig": "seqcast.config",
    "load_config": "seqcast.config",
    "model_config_for": "seqcast.config",
    "RecurrentForecaster": "seqcast.models",
    "save_model": "seqcast.artifacts",
    "load_model": "seqcast.artifacts",
    "parse_file": "seqcast.ingest",
    "ingest_file": "seqcast.ingest",
    "IngestError": "seqcast.ingest",
    "open_engine": "seqcast.store",
    "run_pipeline": "seqcast.pipeline",
    "RunInProgress": "seqcast.lock",
    "run_backtest": "seqcast.backtest",
    "score": "seqcast.evaluate",
    "seasonal_naive": "seqcast.evaluate",
    "read_forecasts": "seqcast.readers",
    "read_metrics": "seqcast.readers",
    "read_accuracy": "seqcast.readers",
    "record_outcomes": "seqcast.ledger",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'seqcast' has no attribute {name!r}")
