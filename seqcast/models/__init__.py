"""Model kinds: one `Forecaster` protocol, one registry line per kind.

Everything that needs to know what a kind is asks this registry: configuration (which kinds can be asked
for), the command line's help, artifacts (which class loads a saved state), training (batched or one by one,
per series or global), backtests and champion selection (baselines are candidates like any kind). Adding a
kind is one module implementing `Forecaster` and one `Kind(...)` line below.

This module is light (no torch): a kind's class is imported when first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from seqcast.config import ModelConfig


@runtime_checkable
class Forecaster(Protocol):
    """A model of one series (or, for a global kind, of many).

    The constructor stores settings only; `fit` sets the fitted state, attributes ending in `_`, among them
    `history_` (epoch, train loss, validation loss or None), `epochs_` and `train_seconds_`; inputs are never
    mutated. `to_state` holds tensors and plain values only (artifacts load it with `weights_only`).
    """

    config: ModelConfig

    def __init__(self, config: ModelConfig) -> None: ...

    def min_length(self) -> int:
        """Shortest series this configuration can fit."""
        ...

    def fit(self, values: np.ndarray, curve: bool = True) -> Self:
        """Fit on one series (1-D, oldest first). `curve`: record a validation curve, where the kind has one."""
        ...

    @classmethod
    def fit_many(cls, config: ModelConfig, series: Sequence[np.ndarray], curve: bool, batched: bool) -> list[Self]:
        """One fitted model per series; `batched` lets a kind train them as one computation."""
        ...

    def predict(self, h: int, history: np.ndarray | None = None) -> np.ndarray:
        """Forecast `h` steps after `history` (default: the fitted series)."""
        ...

    def to_state(self) -> dict[str, Any]: ...

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self: ...


@dataclass(frozen=True)
class Kind:
    """A registered model kind and what the pipeline needs to know of it."""

    name: str
    help: str
    module: str
    cls: str
    #: The fitted state is saved as a content-addressed artifact (and reused when data and settings repeat).
    stored: bool = True
    #: One model across all series (trained once per run, a candidate for each series).
    is_global: bool = False
    #: Always a candidate and the floor a champion must beat; not asked for with --model.
    baseline: bool = False
    #: A recurrent network kind: `--model` and `--global-model` take it.
    recurrent: bool = False
    #: A statistical model (statsforecast): a candidate of the default beside the networks.
    statistical: bool = False
    #: Made from other candidates' forecasts (the combination), not fitted itself.
    derived: bool = False
    #: Not listed in help (the deterministic stand-in the orchestration tests use).
    hidden: bool = False

    def forecaster(self) -> type[Forecaster]:
        """The kind's class (imported on first use); a derived kind has none."""
        if self.derived:
            raise TypeError(f"{self.name} is made from other candidates' forecasts, not fitted")
        cls: type[Forecaster] = getattr(importlib.import_module(self.module), self.cls)
        return cls


GLOBAL_PREFIX = "global_"
#: The kind of the combined forecast (a candidate made from the others).
COMBINATION = "combination"

_KINDS = [
    Kind("rnn", "simple recurrent network (nn.RNN)", "seqcast.models.recurrent", "RecurrentForecaster", recurrent=True),
    Kind("lstm", "long short-term memory network", "seqcast.models.recurrent", "RecurrentForecaster", recurrent=True),
    Kind("gru", "gated recurrent unit network", "seqcast.models.recurrent", "RecurrentForecaster", recurrent=True),
    Kind("ets", "exponential smoothing (statsforecast AutoETS)", "seqcast.models.statistical", "ETS", statistical=True),
    Kind("ces", "complex exponential smoothing (statsforecast AutoCES)", "seqcast.models.statistical", "CES",
         statistical=True),
    Kind("theta", "the Theta method (statsforecast AutoTheta)", "seqcast.models.statistical", "Theta",
         statistical=True),
    Kind("seasonal_naive", "each month as a year before", "seqcast.models.baselines", "SeasonalNaive", stored=False,
         baseline=True),
    Kind("naive", "the last value", "seqcast.models.baselines", "Naive", stored=False, baseline=True),
    Kind(COMBINATION, "the mean of the networks' and statistical models' forecasts", "", "", stored=False,
         derived=True),
    *(
        Kind(f"{GLOBAL_PREFIX}{k}", f"one {k} network across all series", "seqcast.models.global_network",
             "GlobalForecaster", is_global=True)
        for k in ("rnn", "lstm", "gru")
    ),
    Kind("fake", "deterministic stand-in for orchestration tests", "seqcast.models.fake", "FakeForecaster",
         hidden=True),
]  # fmt: skip
REGISTRY: dict[str, Kind] = {k.name: k for k in _KINDS}


def kind(name: str) -> Kind:
    """The registered kind called `name` (ValueError naming the known ones otherwise)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model kind {name!r}: use one of {', '.join(selectable_kinds())}") from None


def selectable_kinds() -> list[str]:
    """Kinds `--model` takes: the network kinds."""
    return [k.name for k in _KINDS if k.recurrent]


def statistical_kinds() -> list[str]:
    return [k.name for k in _KINDS if k.statistical]


def network_kinds() -> list[str]:
    """Network kinds (also what a global model can be)."""
    return [k.name for k in _KINDS if k.recurrent]


def baseline_kinds() -> list[str]:
    """Kinds every series is scored with, whatever the configuration."""
    return [k.name for k in _KINDS if k.baseline]


def global_kind(network: str) -> str:
    """The registered global kind of a network kind (`gru` -> `global_gru`)."""
    return kind(f"{GLOBAL_PREFIX}{network}").name


def help_text(names: list[str] | None = None) -> str:
    """What each kind is (the selectable ones by default), for the command line."""
    wanted = selectable_kinds() if names is None else names
    return "; ".join(f"{k.name}: {k.help}" for k in _KINDS if k.name in wanted)


def __getattr__(name: str) -> Any:
    # The classes, for `from seqcast.models import RecurrentForecaster` (imported, with torch, on first use).
    classes = {"RecurrentForecaster": "seqcast.models.recurrent", "RecurrentNet": "seqcast.models.recurrent",
               "GlobalForecaster": "seqcast.models.global_network"}  # fmt: skip
    if name in classes:
        return getattr(importlib.import_module(classes[name]), name)
    raise AttributeError(f"module 'seqcast.models' has no attribute {name!r}")
