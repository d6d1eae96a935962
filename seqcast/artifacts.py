"""Model artifacts on disk: content-addressed, written atomically, verified and loaded without executing code.

Each artifact `models/<model id>.pt` has a sidecar `<model id>.pt.sha256` written with it: the sha256 of the
file as written (also recorded in `model_runs.artifact_sha256`). A file that no longer matches, or has no
sidecar, is never used: it is reported and the model is trained again. States hold tensors and plain values
only and load with `torch.load(weights_only=True)`, which refuses pickled code.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import torch

from seqcast import models
from seqcast._files import atomic_write
from seqcast.config import ModelConfig

log = logging.getLogger(__name__)


class ArtifactError(ValueError):
    """An artifact that cannot be used: unreadable, altered since it was written, or of another kind."""


def model_id(config: ModelConfig, data_hash: str, purpose: str) -> str:
    """Identity of a trained model: what it was trained on, how, and for what (holdout or final)."""
    key = f"{purpose}|{config.kind}|{config.config_hash()}|{data_hash}"
    return f"{config.kind}-{purpose}-{hashlib.sha256(key.encode()).hexdigest()[:20]}"


def artifact_path(models_dir: Path, model_id: str) -> Path:
    return Path(models_dir) / f"{model_id}.pt"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_model(model: Any, path: Path, extra: dict[str, str] | None = None) -> str:
    """Save a fitted model's state (tensors and plain values only) to `path`, atomically, with its hash beside it.

    Returns the sha256 of the file written.
    """
    state = model.to_state()
    state["meta"] = dict(extra or {})
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = Path(path)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    atomic_write(_sidecar(path), lambda tmp: tmp.write_text(digest + "\n", encoding="ascii"))
    return digest


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def recorded_sha256(path: Path) -> str | None:
    """The hash written beside an artifact, or None."""
    try:
        return _sidecar(Path(path)).read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def verified(path: Path) -> bool:
    """Whether an artifact exists and still has the hash it was written with."""
    path = Path(path)
    expected = recorded_sha256(path)
    try:
        return expected is not None and file_sha256(path) == expected
    except OSError:
        return False


def load_model(path: Path, expected_kind: str | None = None) -> Any:
    """Load an artifact saved by `save_model`, after checking it against its recorded hash.

    Raises:
        ArtifactError: altered, without a recorded hash, unreadable, or not of `expected_kind`.
    """
    path = Path(path)
    expected = recorded_sha256(path)
    if expected is None:
        raise ArtifactError(f"{path.name}: no recorded hash beside it")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected:
        raise ArtifactError(f"{path.name}: altered since it was written (sha256 does not match)")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(f"{path.name}: unreadable ({exc})") from exc
    kind = _kind_of(state)
    if expected_kind is not None and kind != expected_kind:
        raise ArtifactError(f"{path.name}: a {kind} model, not {expected_kind}")
    return models.kind(kind).forecaster().from_state(state)


def _kind_of(state: dict[str, Any]) -> str:
    if "kind" in state:
        return str(state["kind"])
    # Artifacts written before states named their kind.
    network = str(json.loads(state["config"])["kind"])
    return models.global_kind(network) if state.get("global") else network


def try_load(path: Path, expected_kind: str | None = None) -> Any | None:
    """`load_model`, or None when the artifact is missing or cannot be used (it is then trained again)."""
    if not Path(path).exists():
        return None
    try:
        return load_model(path, expected_kind)
    except (ArtifactError, OSError) as exc:
        log.warning("not using model artifact %s (%s): training it again", Path(path).name, exc)
        return None
