"""Settings layering: defaults < config file < SEQCAST_* environment < explicit options."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from seqcast.config import RunConfig, load_config, model_config_for


def test_layers_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file = tmp_path / "seqcast.toml"
    config_file.write_text('models = ["gru"]\nhorizon = 18\nholdout = 6\n')
    monkeypatch.setenv("SEQCAST_CONFIG", str(config_file))
    assert load_config().horizon == 18 and load_config().models == ["gru"]
    monkeypatch.setenv("SEQCAST_HORIZON", "24")
    monkeypatch.setenv("SEQCAST_DATA_DIR", str(tmp_path / "env-data"))
    config = load_config()
    assert (config.horizon, config.holdout, config.data_dir) == (24, 6, str(tmp_path / "env-data"))
    config = load_config(horizon=6, models=None, data_dir=None)  # unset options keep the lower layers
    assert (config.horizon, config.models) == (6, ["gru"])


def test_defaults_and_database_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEQCAST_CONFIG", str(tmp_path / "absent.toml"))
    config = load_config()
    assert (config.models, config.horizon, config.validation_months, config.preset) == (["lstm"], 12, 12, "default")
    assert str(config.database_url()) == f"sqlite:///{Path('seqcast-data') / 'seqcast.db'}"
    assert load_config(db_url="postgresql+psycopg://u@h/db").database_url() == "postgresql+psycopg://u@h/db"


def test_a_data_folder_with_url_characters_keeps_its_database_inside(tmp_path: Path) -> None:
    from seqcast import store

    folder = tmp_path / "odd?name%41#x"
    config = RunConfig(data_dir=str(folder))
    engine = store.engine(config.database_url())
    try:
        assert Path(engine.url.database or "") == folder / "seqcast.db"
    finally:
        store.dispose()
    assert (folder / "seqcast.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd?name%41#x"]


def test_settings_are_validated_and_frozen() -> None:
    with pytest.raises(ValidationError):
        RunConfig(models=["transformer"])
    with pytest.raises(ValidationError):
        RunConfig(horizon=0)
    with pytest.raises(ValidationError):
        RunConfig(models=[])
    config = RunConfig()
    with pytest.raises(ValidationError):
        config.horizon = 3  # type: ignore[misc]


def test_config_hash_tracks_every_setting_and_the_preset() -> None:
    base = model_config_for("lstm")
    assert base.config_hash() == model_config_for("lstm").config_hash()
    assert base.config_hash() != model_config_for("lstm", epochs=51).config_hash()
    assert base.config_hash() != model_config_for("gru").config_hash()
    tutorial = model_config_for("lstm", "tutorial")
    assert (tutorial.lookback, tutorial.scaling, tutorial.head, tutorial.epochs) == (12, "minmax", "recursive", 100)
