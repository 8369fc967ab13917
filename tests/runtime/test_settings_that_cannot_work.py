"""Settings that would pass a loose check but cannot work: each is exit 2 and one line naming the
setting, never a traceback, through the real `hubctl`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.hubenv import HubEnv, one_line_error


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("HUB_TASK_TIMEOUT_SECONDS", "inf"),
        ("HUB_TASK_TIMEOUT_SECONDS", "nan"),
        ("HUB_LOCK_WAIT_SECONDS", "1e308"),
        ("HUB_CHECKPOINT_SCHEDULE", "0 0 30 2 *"),
        ("HUB_PROXMOX_URL", "https://pve.example:8006/api2/json"),
        ("HUB_PROXMOX_URL", "https://pve.example:99999"),
        ("HUB_PROXMOX_URL", "https://"),
        ("HUB_PROXMOX_URL", "https://root:secret@pve.example:8006"),
        ("HUB_REDIS_URL", "garbage"),
        ("HUB_REDIS_URL", "redis://127.0.0.1:6379/zero"),
        ("HUB_PARAMS", "{not json"),
        ("HUB_VMID", "99999999999999999999999"),
        ("HUB_KEEP_LAST", "99999999999999999999999"),
        ("HUB_PROXMOX_API_TOKEN", "hub@pve!hub=with space"),
    ],
)
def test_refused_with_one_line(sqlite_hubenv: HubEnv, setting: str, value: str) -> None:
    result = sqlite_hubenv.run("checkpoint", "list", **{setting: value})
    assert result.returncode == 2, result.stderr
    line = one_line_error(result.stderr)
    assert setting in line
    if setting == "HUB_PROXMOX_API_TOKEN":
        assert value.split("=")[-1] not in result.stderr + result.stdout  # the secret is never printed
    if "root:secret@" in value:
        assert "root:secret" not in result.stderr


@pytest.mark.parametrize("option", ["--vmid", "--limit"])
def test_numbers_beyond_64_bits_are_usage_errors(sqlite_hubenv: HubEnv, option: str) -> None:
    result = sqlite_hubenv.run("checkpoint", "list", option, str(2**64 + 1))
    assert result.returncode == 2
    assert option in one_line_error(result.stderr)


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("bad.yaml", b"vmid: 100\nnode: \xff\xfe\n", "not UTF-8"),
        ("deep.json", b"[" * 100_000 + b"]" * 100_000, "HUB_CONFIG_FILE"),
        ("loop.yaml", b"params: &a [*a]\n", "nests too deeply"),
        ("deep.yaml", b"params: " + b"[" * 5000 + b"]" * 5000 + b"\n", "HUB_CONFIG_FILE"),
    ],
)
def test_a_settings_file_that_cannot_be_read_is_one_line(
    sqlite_hubenv: HubEnv, tmp_path: Path, name: str, content: bytes, fragment: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = sqlite_hubenv.run("checkpoint", "list", HUB_CONFIG_FILE=str(path))
    assert result.returncode == 2, result.stderr[-500:]
    line = one_line_error(result.stderr)
    assert "HUB_CONFIG_FILE" in line and fragment in line


@pytest.mark.parametrize("command", [("checkpoint", "list"), ("db", "upgrade"), ("sentinel", "status")])
def test_a_database_url_that_is_not_a_database_is_one_line(
    sqlite_hubenv: HubEnv, tmp_path: Path, command: tuple[str, ...]
) -> None:
    """A file that is not an SQLite database (the driver's DatabaseError, not an OperationalError):
    one line and exit 1 from the Hub's commands and the sentinel's alike (they have a store each)."""
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database, but the path someone typed\n" * 200)
    result = sqlite_hubenv.run(*command, HUB_DATABASE_URL=f"sqlite:///{junk}")
    assert result.returncode == 1, result.stderr
    assert "file is not a database" in one_line_error(result.stderr)


@pytest.mark.parametrize("command", [("checkpoint", "list"), ("sentinel", "status")])
def test_a_database_folder_that_cannot_be_made_is_one_line(
    sqlite_hubenv: HubEnv, tmp_path: Path, command: tuple[str, ...]
) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    result = sqlite_hubenv.run(*command, HUB_DATABASE_URL=f"sqlite:///{in_the_way}/hub/hub.db")
    assert result.returncode == 2, result.stderr
    assert "HUB_DATABASE_URL" in one_line_error(result.stderr)


def test_a_lock_folder_that_cannot_be_used_is_one_line(sqlite_hubenv: HubEnv, tmp_path: Path) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    result = sqlite_hubenv.run("checkpoint", "create", HUB_LOCK_DIR=str(in_the_way))
    assert result.returncode == 2, result.stderr
    assert "HUB_LOCK_DIR" in one_line_error(result.stderr)
    assert sqlite_hubenv.run("checkpoint", "list", "--json").stdout.count('"uuid"') == 0  # nothing marked
