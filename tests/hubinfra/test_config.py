"""Stack config validation: each error is one message naming the key; the program stops at once."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from hubinfra.config import SCHEMA_PATH, SECRET_KEYS, ConfigError, parse_stack_config, render_json_schema
from hubinfra.stack import EXIT_ERROR_REPORTED
from tests.hubinfra.harness import REPO, run_program, stack_config

Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    """Edit `hub:<top>.<nested>...` in a parsed stack config."""

    def edit(config: dict[str, Any]) -> None:
        top, *rest = path.split(".")
        key = f"hub:{top}"
        if not rest:
            config[key] = value
            return
        node = config[key]
        for part in rest[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        node[rest[-1]] = value

    return edit


def _delete(key: str) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        del config[f"hub:{key}"]

    return edit


def _hub_config(stack: str, edit: Edit) -> dict[str, Any]:
    config = copy.deepcopy(stack_config(stack))
    # The committed files declare no experiment; the cases about one start from the guide's example.
    config.setdefault(
        "hub:experiments", [{"name": "faster-gate", "checkpoint": "hub-" + "0" * 32, "vmId": 1150}]
    )
    edit(config)
    return {k.removeprefix("hub:"): v for k, v in config.items() if k.startswith("hub:")}


CASES: list[tuple[str, str, Edit, str]] = [
    ("dev", "cores", _set("hubVm.cores", 2), "hub:hubVm.cores: must be >= 4"),
    ("dev", "memory", _set("hubVm.memoryMib", 4096), "hub:hubVm.memoryMib: must be >= 8192"),
    ("dev", "disk", _set("hubVm.diskGb", 20), "hub:hubVm.diskGb: must be >= 50"),
    ("dev", "unknown top key", _set("colour", "blue"), "hub:colour: unknown key"),
    ("dev", "unknown nested key", _set("hubVm.cpus", 4), "hub:hubVm.cpus: unknown key"),
    ("dev", "missing key", _delete("templateVmId"), "hub:templateVmId: required"),
    (
        "dev",
        "snapshot digit",
        _set("experiments.0.checkpoint", "1abc"),
        "hub:experiments[0].checkpoint: snapshot",
    ),
    ("dev", "snapshot long", _set("experiments.0.checkpoint", "hub-" + "a" * 40), "at most 40 characters"),
    ("dev", "snapshot reserved", _set("experiments.0.checkpoint", "current"), "'current' is reserved"),
    ("dev", "bad cron", _set("checkpoints", {"schedule": "daily"}), "hub:checkpoints.schedule: must be"),
    # The runtime's parser refuses these at boot, so `pulumi up` must refuse them first.
    (
        "dev",
        "cron minute 99",
        _set("checkpoints", {"schedule": "99 0 * * *"}),
        "hub:checkpoints.schedule: must be",
    ),
    ("dev", "cron never fires", _set("checkpoints", {"schedule": "0 0 30 2 *"}), "never fires"),
    (
        "dev",
        "snapshot reserved any case",
        _set("experiments.0.checkpoint", "Current"),
        "'Current' is reserved",
    ),
    (
        "dev",
        "domain hub type production",
        _set("domainHubs", [{"name": "x", "type": "production", "label": "x", "vmId": 1161}]),
        "hub:domainHubs[0].type:",
    ),
    (
        "dev",
        "vlan clash",
        _set("network.tasks.0.vlanTag", 110),
        "hub:network.tasks[0].vlanTag: 110 is already used by network.management",
    ),
    (
        "dev",
        "cidr overlap",
        _set("network.isolatedPrefix", "10.10.0.0/16"),
        "hub:network.isolatedPrefix: 10.10.0.0/16 overlaps network.management.cidr (10.10.0.0/24)",
    ),
    (
        "dev",
        "egress into management",
        _set("network.allowedEgress", [{"cidr": "10.0.0.0/8"}]),
        "hub:network.allowedEgress[0].cidr: 10.0.0.0/8 overlaps network.management.cidr (10.10.0.0/24)",
    ),
    (
        "dev",
        "proxmoxApi on a task network",
        _set("network.proxmoxApi", ["10.10.0.2", "10.11.0.5"]),
        "hub:network.proxmoxApi[1]: 10.11.0.5/32 overlaps network.tasks[0].cidr (10.11.0.0/24)",
    ),
    (
        "dev",
        "proxmoxApi on an isolated hub network",
        _set("network.proxmoxApi", ["10.210.7.0/24"]),
        "hub:network.proxmoxApi[0]: 10.210.7.0/24 overlaps network.isolatedPrefix (10.210.0.0/16)",
    ),
    (
        "dev",
        "proxmoxApi is all of management",
        _set("network.proxmoxApi", ["10.10.0.0/24"]),
        "hub:network.proxmoxApi[0]: 10.10.0.0/24 overlaps network.management.cidr (10.10.0.0/24): "
        "inside management list each node's address (/32)",
    ),
    ("dev", "proxmoxApi IPv6", _set("network.proxmoxApi", ["2001:db8::1"]), "hub:network.proxmoxApi[0]:"),
    ("dev", "proxmoxApi hostname", _set("network.proxmoxApi", ["pve-dev"]), "hub:network.proxmoxApi[0]:"),
    (
        "dev",
        "experiments without proxmoxApi",
        _set("network.proxmoxApi", []),
        "hub:network.proxmoxApi: required when hub:experiments is not empty",
    ),
    ("dev", "sdn id of one char", _set("network.zone", "h"), "hub:network.zone: must match"),
    (
        "dev",
        "sdn vnet of nine chars",
        _set("network.management.vnet", "hdmgmt123"),
        "hub:network.management.vnet",
    ),
    ("dev", "bad endpoint", _set("proxmox.endpoint", "http://pve:8006"), "hub:proxmox.endpoint: must match"),
    (
        "dev",
        "isolated prefix too small",
        _set("network.isolatedPrefix", "10.210.0.0/25"),
        "hub:network.isolatedPrefix: must be an IPv4 network of /24 or larger",
    ),
    ("dev", "bad environment", _set("environment", "staging"), "hub:environment:"),
    (
        "dev",
        "production hubType in dev",
        _set("hubType", "production"),
        "hub:hubType: 'production' cannot run in the development environment",
    ),
    ("prod", "prod unprotected", _set("protect", False), "hub:protect: must be true for production"),
    ("prod", "prod insecure", _set("proxmox.insecure", True), "hub:proxmox.insecure: refused for production"),
    ("prod", "prod manual", _set("checkpoints.schedule", "manual"), "hub:checkpoints.schedule: production"),
    (
        "dev",
        "duplicate experiment",
        _set(
            "experiments",
            [
                {"name": "a", "checkpoint": "hub-x", "vmId": 1150},
                {"name": "a", "checkpoint": "hub-y", "vmId": 1151},
            ],
        ),
        "hub:experiments[1].name: 'a' is already used by experiments[0]",
    ),
    (
        "dev",
        "vmId clash",
        _set("experiments.0.vmId", 1100),
        "hub:experiments[0].vmId: 1100 is already used by hubVm.vmId",
    ),
]


@pytest.mark.parametrize(("stack", "case", "edit", "message"), CASES, ids=[c[1] for c in CASES])
def test_each_config_error_names_its_key(stack: str, case: str, edit: Edit, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_stack_config(_hub_config(stack, edit))
    text = str(info.value)
    assert message.lower() in text.lower(), text
    assert "\n" not in text, "one line"


def test_schedules_the_runtime_runs_are_accepted() -> None:
    # Names and lists parse in the runtime's scheduler; the old regex refused them.
    for expr in ("30 2 * * mon-fri", "0 0 29 2 *", "0 */6 * * *"):
        config = parse_stack_config(_hub_config("prod", _set("checkpoints.schedule", expr)))
        assert config.checkpoints.schedule == expr


def test_committed_stack_files_are_valid() -> None:
    for stack in ("dev", "prod"):
        config = parse_stack_config(_hub_config(stack, lambda _: None))
        assert config.environment == {"dev": "development", "prod": "production"}[stack]


def test_program_fails_at_once_with_one_message_and_no_resources() -> None:
    run = run_program("dev", edit=_set("hubVm.cores", 2))
    assert run.exit_code == EXIT_ERROR_REPORTED
    assert run.errors == ["hub:hubVm.cores: must be >= 4"]
    assert [r.type for r in run.resources] == [], "nothing may be declared"


def test_config_error_exit_code_tells_the_engine_the_error_is_already_reported() -> None:
    # The Python language host bails quietly on 32 and adds "program exited with non-zero exit
    # code: N" for any other code: only 32 leaves the operator with exactly one error line.
    assert EXIT_ERROR_REPORTED == 32
    run = run_program("prod", edit=_set("hubVm.memoryMib", 1024))
    assert (run.exit_code, run.errors) == (32, ["hub:hubVm.memoryMib: must be >= 8192"])


def test_plain_text_api_token_is_refused_naming_the_key() -> None:
    run = run_program("prod", secrets={}, edit=_set("proxmoxApiToken", "root@pam!ci=abc"))
    assert run.exit_code == EXIT_ERROR_REPORTED
    assert len(run.errors) == 1
    assert run.errors[0].startswith("hub:proxmoxApiToken: must be set with `pulumi config set --secret")
    assert "abc" not in run.errors[0], "the refused value is never echoed"
    assert run.resources == []


def test_no_stack_without_the_token_secret_still_runs_from_the_environment() -> None:
    # PROXMOX_VE_API_TOKEN is the other sanctioned way: no token key at all is fine.
    run = run_program("dev", secrets={})
    assert run.exit_code is None, run.errors


def test_committed_stack_files_hold_no_credentials() -> None:
    for path in sorted(REPO.glob("Pulumi*.yaml")):
        text = path.read_text()
        config = yaml.safe_load(text).get("config") or {}
        for key, value in config.items():
            # Only Pulumi-encrypted values may sit in a committed file under a secret key.
            if key.removeprefix("hub:") in SECRET_KEYS:
                assert isinstance(value, dict) and set(value) == {"secure"}, f"{path.name}: {key}"
        # PVE token secrets are UUIDs: `user@realm!name=xxxxxxxx-xxxx-...`.
        token = re.search(r"![\w.-]+=[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-", text)
        assert token is None, f"{path.name} contains an API token"
        assert "password" not in text.lower(), path.name


def test_structured_values_arrive_as_json_strings_like_the_engine_sends_them() -> None:
    # The harness sends objects as JSON text; scalar strings must still be accepted as numbers.
    run = run_program("dev", edit=_set("templateVmId", "9000"))
    assert run.exit_code is None, run.errors


def test_isolated_network_slot_collision_is_refused() -> None:
    def two_colliding(config: dict[str, Any]) -> None:
        config["hub:experiments"] = [
            {"name": "a", "checkpoint": "hub-x", "vmId": 1150},
            {"name": "b", "checkpoint": "hub-x", "vmId": 1250},  # 1250 mod 100 == 1150 mod 100
        ]

    run = run_program("dev", edit=two_colliding)
    assert run.exit_code == EXIT_ERROR_REPORTED
    assert run.errors == [
        "hub:experiments[1].vmId: 1250 lands on the same isolated network slot as experiments[0] "
        "(slot = vmId mod 100); pick another vmId"
    ]
    assert run.resources == []


def test_json_schema_is_up_to_date() -> None:
    assert SCHEMA_PATH.read_text() == render_json_schema(), "run: .venv/bin/python -m hubinfra.config"
