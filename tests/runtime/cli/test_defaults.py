"""Without HUB_DATABASE_URL the database is per user ($XDG_DATA_HOME/hub, else ~/.local/share/hub),
whatever directory hubctl runs in; health names it; an empty database is called that, not None."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support.hubenv import HUBCTL, REPO


def _hubctl(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") and k != "XDG_DATA_HOME"}
    base.update(PYTHONPATH=str(REPO), HUB_LOCK_DIR=str(cwd / "locks"), **env)
    return subprocess.run([*HUBCTL, *args], capture_output=True, text=True, timeout=60, env=base, cwd=cwd)


def test_default_database_is_in_the_users_data_directory(tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "somewhere"
    home.mkdir()
    work.mkdir()
    empty = _hubctl("db", "current", cwd=work, HOME=str(home))
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.startswith("empty database; code ") and "None" not in empty.stdout
    upgraded = _hubctl("db", "upgrade", cwd=work, HOME=str(home))
    assert upgraded.returncode == 0, upgraded.stderr
    assert "None" not in upgraded.stdout
    expected = home / ".local" / "share" / "hub" / "hub.db"
    assert expected.is_file()
    assert not (work / "hub.db").exists()
    health = _hubctl("health", "--json", cwd=work, HOME=str(home))
    database = json.loads(health.stdout)["checks"][0]
    assert database["name"] == "database" and str(expected) in database["detail"]


def test_xdg_data_home_wins(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    result = _hubctl("db", "upgrade", cwd=tmp_path, HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(xdg))
    assert result.returncode == 0, result.stderr
    assert (xdg / "hub" / "hub.db").is_file()
    assert not (tmp_path / "home").exists()
