"""psml.config: the quick-mode switch and the data directory, read in one place."""

import pytest
from psml import config


@pytest.mark.parametrize("value,quick", [("1", True), ("yes", True), ("TRUE", True),
                                         ("0", False), ("", False), ("false", False),
                                         ("off", False)])
def test_quick_mode_parsing(monkeypatch, value, quick):
    monkeypatch.setenv("PSML_QUICK", value)
    assert config.is_quick() is quick
    assert config.pick("full", "quick") == ("quick" if quick else "full")


def test_quick_mode_off_when_unset(monkeypatch):
    monkeypatch.delenv("PSML_QUICK", raising=False)
    assert not config.is_quick() and config.pick(20, 2) == 20


def test_data_dir_from_env_or_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PSML_DATA", str(tmp_path / "d"))
    assert config.data_dir() == tmp_path / "d"
    monkeypatch.delenv("PSML_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert config.data_dir() == tmp_path / "cache" / "psml"
