"""Typed, frozen settings: defaults < a TOML config file < SEQCAST_* variables < explicit overrides."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import URL

from seqcast import models as registry

Preset = Literal["default", "local", "fast", "tutorial"]

DEFAULT_DATA_DIR = "seqcast-data"

#: The monthly schedule: 06:00 on the first of each month, in an explicit timezone.
DEFAULT_CRON = "0 6 1 * *"
DEFAULT_TIMEZONE = "UTC"

#: Bumped whenever training or forecasting code changes what a stored model would contain.
MODEL_CODE_VERSION = "8"


class ModelConfig(BaseModel):
    """Everything that determines a trained network, and so its cache key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = "lstm"
    lookback: int = Field(24, ge=2)
    hidden: int = Field(32, ge=1)
    layers: int = Field(1, ge=1)
    lr: float = Field(0.01, gt=0)
    epochs: int = Field(50, ge=1)
    #: "minmax": the tutorial's MinMax scaling (fit on the training part only).
    #: "log_window": log scale where the series is positive, windows centred on their last value.
    scaling: Literal["minmax", "log_window"] = "log_window"
    #: "recursive": one-step model fed back on itself; "direct": one output per horizon step.
    head: Literal["recursive", "direct"] = "direct"
    horizon: int = Field(12, ge=1)
    #: With centred windows, what targets are measured from: the window's last value, or the same month
    #: one season earlier (the network then learns a correction to the seasonal-naive forecast).
    target: Literal["last", "seasonal"] = "seasonal"
    #: Share of the (time-ordered) windows kept for the validation loss; the rest trains.
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    #: Stop when the validation loss has not improved for this many epochs (None: train every epoch; the
    #: validation tail then only records the curve). Backtests favoured a fixed, short schedule.
    patience: int | None = None
    #: After choosing the epoch count on the validation tail, train again on every window.
    refit_all_windows: bool = True
    seed: int = 0
    #: Networks trained from consecutive seeds whose forecasts are averaged (variance drops, cost grows).
    ensemble: int = Field(3, ge=1, le=50)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        return registry.kind(value).name

    def config_hash(self) -> str:
        """Content hash of the settings and the model code version."""
        payload = json.dumps({"config": self.model_dump(mode="json"), "code": MODEL_CODE_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


PRESETS: dict[str, dict[str, Any]] = {
    # The notebook's settings, without its leakage: the scaler sees the training part only.
    "tutorial": dict(
        lookback=12,
        hidden=32,
        layers=1,
        lr=0.01,
        epochs=100,
        scaling="minmax",
        head="recursive",
        target="last",
        val_fraction=0.2,
        patience=None,
        refit_all_windows=False,
        ensemble=1,
    ),
    # The default's network: one across all series (seqcast.models.global_network). One seed: a second one's
    # median changed M1's mean MASE by less than its noise, at twice the training.
    "default": dict(lookback=24, hidden=32, layers=1, lr=0.003, ensemble=1),
    # A network per series (lookback 24, year-over-year inputs, a direct 12-month head anchored on last year).
    "local": {},
    # A small network per series: a 12-month lookback, 16 hidden units and one seed.
    "fast": dict(lookback=12, hidden=16, ensemble=1),
}
#: Presets whose networks are fitted per series; the default's is one network across all series.
LOCAL_PRESETS = ("local", "fast", "tutorial")
#: Kinds asked for with --model that are always fitted per series (the orchestration tests' stand-in).
_PER_SERIES_ONLY = ("fake",)


def model_config_for(
    kind: str, preset: str = "default", horizon: int = 12, seed: int = 0, **overrides: Any
) -> ModelConfig:
    """The model settings of one kind under a preset, with explicit overrides (None means keep)."""
    values: dict[str, Any] = {**PRESETS[preset], "kind": kind, "horizon": horizon, "seed": seed}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ModelConfig(**values)


class RunConfig(BaseModel):
    """The parameters of one pipeline run; also the Prefect flow's parameter model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: str = Field(DEFAULT_DATA_DIR, description="Data folder (database, inbox, archive, lake, models).")
    db_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file in the data folder.")
    sources: list[str] = Field(default_factory=list, description="Files to ingest besides the inbox.")
    series_id: str | None = Field(None, description="Series id for two-column files (default: file stem).")
    models: list[str] = Field(
        default_factory=lambda: ["lstm"],
        description=f"Network kinds, the recurrent core of the forecast ({registry.help_text()}).",
    )
    preset: Preset = Field(
        "default",
        description="'default' (one network across all series), or a network per series: 'local', 'fast', or the "
        "notebook's 'tutorial'.",
    )
    statistical: list[str] = Field(
        default_factory=lambda: ["ets", "ces"],
        description=f"Statistical candidates ({registry.help_text(registry.statistical_kinds())}); [] for none.",
    )
    combine: bool = Field(True, description="Add the combination (mean) of the networks and statistical models.")
    champion_margin: float = Field(
        0.7,
        ge=0,
        le=1,
        description="A single model replaces the combination as champion only when its holdout MASE is below "
        "(1 - margin) times the combination's.",
    )
    horizon: int = Field(12, ge=1, le=120, description="Months to forecast.")
    holdout: int = Field(0, ge=0, le=120, description="Months held out for validation (0: the horizon).")
    epochs: int | None = Field(None, ge=1, description="Override the preset's epoch count (per-series networks).")
    lookback: int | None = Field(None, ge=2, description="Override the preset's lookback window.")
    seed: int = Field(0, description="Seed of every network's initialisation and training.")
    interval_levels: tuple[float, float] = Field(
        (0.8, 0.95), description="Coverage of the intervals: yhat_lower..upper, then yhat_lower..upper_outer."
    )
    fill_gaps: bool = Field(False, description="Interpolate interior missing months instead of skipping.")
    global_steps: int = Field(
        1500, ge=1, description="Training steps (mini-batches of 256 windows) of a global network."
    )
    chunk_size: int = Field(50, ge=1, description="Series per training task.")
    batch_training: bool = Field(
        True, description="Train a chunk's networks as one batched computation (False: one by one, the reference)."
    )
    max_plots: int = Field(20, ge=0, description="Series plotted per run (forecast and loss curve), first by id.")
    degradation_factor: float = Field(
        2.0,
        gt=1,
        description="A series is degraded (and retrained) when its published forecasts' realised MASE is above "
        "this many times the holdout MASE they were published with.",
    )
    degradation_months: int = Field(
        6, ge=1, description="The latest realised months of a series that degradation is judged on."
    )
    workers: int = Field(2, ge=1, description="Training tasks at once.")
    use_bundled_demo: bool | None = Field(
        None,
        description="Ingest the bundled series into an empty store (default: only the default data folder's).",
    )
    db_url_secret: str | None = Field(
        None, description="Name of a Prefect Secret block that holds the database URL (for deployments)."
    )

    @field_validator("models")
    @classmethod
    def _unique_models(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one model kind is needed")
        allowed = registry.selectable_kinds() + [k for k, spec in registry.REGISTRY.items() if spec.hidden]
        for name in value:
            if name not in allowed:
                raise ValueError(f"unknown model kind {name!r}: use one of {', '.join(registry.selectable_kinds())}")
        return list(dict.fromkeys(value))

    @field_validator("statistical")
    @classmethod
    def _statistical_kinds(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in registry.statistical_kinds():
                raise ValueError(
                    f"unknown statistical kind {name!r}: use one of {', '.join(registry.statistical_kinds())}"
                )
        return list(dict.fromkeys(value))

    @field_validator("interval_levels")
    @classmethod
    def _levels(cls, value: tuple[float, float]) -> tuple[float, float]:
        inner, outer = value
        if not 0 < inner < outer < 1:
            raise ValueError("interval levels must be two coverages with 0 < inner < outer < 1, e.g. [0.8, 0.95]")
        return value

    @property
    def validation_months(self) -> int:
        """The holdout: `holdout`, or the horizon when it is 0."""
        return self.holdout or self.horizon

    @property
    def per_series_networks(self) -> bool:
        return self.preset in LOCAL_PRESETS

    def model_configs(self) -> list[ModelConfig]:
        """The settings of every kind fitted series by series: per-series networks (with a local preset), then
        the statistical kinds."""
        networks = self.models if self.per_series_networks else [k for k in self.models if k in _PER_SERIES_ONLY]
        return [
            model_config_for(
                kind, self._preset_of(kind), self.horizon, self.seed, epochs=self.epochs, lookback=self.lookback
            )
            for kind in [*networks, *self.statistical]
        ]

    def _preset_of(self, kind: str) -> str:
        return self.preset if self.preset in LOCAL_PRESETS else "local"

    def global_configs(self) -> list[ModelConfig]:
        """The settings of the networks fitted across all series (the default preset), one per network kind;
        each forecasts the longer of the horizon and the holdout at once."""
        if self.per_series_networks:
            return []
        out = max(self.horizon, self.validation_months)
        return [
            model_config_for(kind, "default", out, self.seed, lookback=self.lookback)
            for kind in self.models
            if kind not in _PER_SERIES_ONLY
        ]

    def paths(self) -> DataPaths:
        return DataPaths(Path(self.data_dir))

    def database_url(self) -> str | URL:
        """The database: `db_url`, else SEQCAST_DB_URL, else the SQLite file in the data folder (built with the URL
        API, so a `?` or `%` in the folder's path stays part of the path).

        The command line and a deployment keep a URL with a password out of the settings a run shows (its
        Prefect parameters, its stored configuration) and hand it over in SEQCAST_DB_URL instead.
        """
        url = self.db_url or os.environ.get("SEQCAST_DB_URL")
        if url:
            return url
        return URL.create("sqlite", database=str(self.paths().database))

    @property
    def demo_allowed(self) -> bool:
        """Whether an empty store gets the bundled demo series: when asked for, or by default only for the
        default data folder and database (a new user's `make run`), never for a folder or database of one's own."""
        if self.use_bundled_demo is not None:
            return self.use_bundled_demo
        return Path(self.data_dir) == Path(DEFAULT_DATA_DIR) and not (self.db_url or os.environ.get("SEQCAST_DB_URL"))


@dataclass(frozen=True)
class DataPaths:
    """The data folder's layout (DESIGN.md, "Data folder")."""

    root: Path

    @property
    def database(self) -> Path:
        return self.root / "seqcast.db"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def refused(self) -> Path:
        """Inbox entries that are not regular files (links, folders), moved out of the inbox as they were."""
        return self.root / "refused"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def results(self) -> Path:
        """Where the orchestrator persists task results, so cache hits survive a new process."""
        return self.root / "task-results"

    @property
    def lock(self) -> Path:
        return self.root / ".run.lock"

    def create(self) -> DataPaths:
        for folder in (self.inbox, self.archive, self.lake, self.models, self.plots, self.reports):
            folder.mkdir(parents=True, exist_ok=True)
        return self


class _Settings(BaseSettings):
    """Reads SEQCAST_* variables and the config file; only used to build a RunConfig."""

    model_config = SettingsConfigDict(env_prefix="SEQCAST_", extra="ignore")

    data_dir: str | None = None
    db_url: str | None = None
    models: list[str] | None = None
    preset: str | None = None
    horizon: int | None = None
    holdout: int | None = None
    epochs: int | None = None
    lookback: int | None = None
    seed: int | None = None
    fill_gaps: bool | None = None
    chunk_size: int | None = None
    workers: int | None = None
    batch_training: bool | None = None
    max_plots: int | None = None
    degradation_factor: float | None = None
    degradation_months: int | None = None
    global_steps: int | None = None
    statistical: list[str] | None = None
    combine: bool | None = None
    use_bundled_demo: bool | None = None
    db_url_secret: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get("SEQCAST_CONFIG", "seqcast.toml")
        return (env_settings, TomlConfigSettingsSource(settings_cls, toml_file=config_file))


def load_config(**overrides: Any) -> RunConfig:
    """Build the run settings: defaults < config file (SEQCAST_CONFIG or ./seqcast.toml) < env < overrides.

    Overrides whose value is None (an option the user did not give) are ignored; an empty list is a value.
    """
    layered = {k: v for k, v in _Settings().model_dump().items() if v is not None}
    layered.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig(**layered)


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Environment variables set for the duration, then restored (a run may be one of many in a process).

    How a database URL with its password reaches the run (as SEQCAST_DB_URL) without entering its settings.
    """
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
