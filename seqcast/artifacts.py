"""Model artifacts on disk: content-addressed, written atomically, loaded without executing code."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from seqcast._files import atomic_write
from seqcast.config import ModelConfig
from seqcast.global_model import GlobalForecaster
from seqcast.models import RecurrentForecaster

log = logging.getLogger(__name__)
T = TypeVar("T")


def model_id(config: ModelConfig, data_hash: str, purpose: str) -> str:
    """Identity of a trained model: what it was trained on, how, and for what (holdout or final)."""
    key = f"{purpose}|{config.kind}|{config.config_hash()}|{data_hash}"
    return f"{config.kind}-{purpose}-{hashlib.sha256(key.encode()).hexdigest()[:20]}"


def artifact_path(models_dir: Path, model_id: str) -> Path:
    return Path(models_dir) / f"{model_id}.pt"


class Stateful(Protocol):
    def to_state(self) -> dict[str, Any]: ...


def save_model(model: Stateful, path: Path, extra: dict[str, str] | None = None) -> Path:
    """Save a fitted model's state (tensors and plain values only) to `path`, atomically."""
    state = model.to_state()
    state["meta"] = dict(extra or {})
    return atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_model(path: Path) -> RecurrentForecaster:
    """Load a model saved by `save_model`; `weights_only=True` refuses pickled code."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    return RecurrentForecaster.from_state(state)


def load_global(path: Path) -> GlobalForecaster:
    """Load a global model saved by `save_model` (tensors and plain values only, like every artifact)."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not state.get("global"):
        raise ValueError(f"{Path(path).name} is not a global model")
    return GlobalForecaster.from_state(state)


def try_load_global(path: Path) -> GlobalForecaster | None:
    """`try_load` for a global model."""
    return _try(path, load_global)


def try_load(path: Path) -> RecurrentForecaster | None:
    """Load an artifact if present and sound; a damaged file is treated as missing (and retrained)."""
    return _try(path, load_model)


def _try(path: Path, load: Callable[[Path], T]) -> T | None:
    if not Path(path).exists():
        return None
    try:
        return load(path)
    except Exception as exc:  # any unreadable artifact is simply rebuilt
        log.warning("ignoring unreadable model artifact %s: %s", Path(path).name, exc)
        return None
