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
