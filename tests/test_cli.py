"""The psml command line: sub-commands exist and print useful things."""

import subprocess
import sys


def psml(*args):
    return subprocess.run([sys.executable, "-m", "psml", *args], capture_output=True,
                          text=True, timeout=300)


def test_help_lists_commands():
    r = psml("--help")
    assert r.returncode == 0
    for cmd in ("doctor", "data", "build"):
        assert cmd in r.stdout


def test_data_info_shows_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PSML_DATA", str(tmp_path))
    r = psml("data", "info")
    assert r.returncode == 0 and str(tmp_path) in r.stdout and "missing" in r.stdout


def test_unknown_command_fails():
    assert psml("frobnicate").returncode != 0
