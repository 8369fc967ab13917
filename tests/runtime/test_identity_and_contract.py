"""The settings file hubinfra renders is exactly what the runtime loads, and the runtime refuses to
act on settings written for another VM (a snapshot clone booting with its source's file).

Whatever hubinfra accepts at `pulumi up` must boot in the runtime: every settings file the program
renders (main Hub, domain hubs, experiments) for the committed stacks and variants of them is loaded
with the runtime's own `load_settings`, and the values with one rule in hubcore.contract (schedule,
snapshot names) are accepted by both sides alike over generated inputs.
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hubcore.contract import EXPERIMENT_HUB_TYPE, HubType
from hubinfra.cloudinit import SETTINGS_PATH, RuntimeSettings, parse_user_data
from hubinfra.config import CheckpointPolicy, Experiment
from runtime.checkpoints.naming import valid_pve_snapname
from runtime.errors import SettingsError
from runtime.settings import Environment, Settings, load_settings
from tests.hubinfra.harness import run_program
from tests.support.hubenv import HubEnv, hub_snapshots, one_line_error

VM_UUID = "3f0b8a4e-7c1d-4e2a-9b6f-0d1c2e3f4a5b"


def rendered(**overrides: Any) -> str:
    values: dict[str, Any] = dict(
        environment="production",
        proxmox_url="https://pve.example:8006/",
        proxmox_api_token="hub@pve!hub=" + "1" * 36,
        proxmox_insecure=False,
        node="pve1",
        vmid=100,
        checkpoints=CheckpointPolicy(
            schedule="0 0 * * *", keep_last=3, keep_daily=14, keep_weekly=8, keep_monthly=6
        ),
        hub_type="production",
        hub_label="main",
        vm_uuid=VM_UUID,
    )
    values.update(overrides)
    return RuntimeSettings(**values).render()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in [k for k in os.environ if k.startswith("HUB_")]:
        monkeypatch.delenv(key)
    yield


def load_file(path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    path.write_text(text)
    monkeypatch.setenv("HUB_CONFIG_FILE", str(path))
    return load_settings()


def test_hubinfra_settings_file_loads_in_the_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    cfg = tmp_path / "hub.yaml"
    prod = load_file(cfg, rendered(), monkeypatch)
    assert prod.environment is Environment.PRODUCTION and prod.vmid == 100 and prod.node == "pve1"
    assert prod.effective_schedule == "0 0 * * *" and prod.keep_daily == 14
    assert prod.vm_uuid == VM_UUID and prod.effective_hub_type is HubType.PRODUCTION
    assert prod.database_url.startswith("postgresql+psycopg://") and prod.redis_url
    exp = load_file(
        cfg,
        rendered(
            environment="experimental",
            hub_type=EXPERIMENT_HUB_TYPE,
            experiment="faster-gc",
            vmid=1150,
            source_vmid=100,
            source_checkpoint="hub-" + "a" * 32,
            params={"gc_interval": 30},
            checkpoints=CheckpointPolicy(),
        ),
        monkeypatch,
    )
    assert exp.environment is Environment.EXPERIMENTAL and exp.experiment == "faster-gc"
    assert exp.vmid == 1150 and exp.source_vmid == 100 and exp.params == {"gc_interval": 30}
    assert exp.effective_schedule == "manual" and exp.effective_hub_type is HubType.DEVELOPMENT


def test_hubinfra_never_renders_a_pair_the_runtime_refuses() -> None:
    # The clone of a production Hub is not the production Hub: refused at render time, not at boot.
    with pytest.raises(ValueError, match="'production' cannot run in the experimental environment"):
        rendered(environment="experimental", hub_type="production")


Edit = Callable[[dict[str, Any]], None]


def _edits(*edits: Edit) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        for one in edits:
            one(config)

    return edit


def _schedule(expr: str) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        config["hub:checkpoints"] = {**config.get("hub:checkpoints", {}), "schedule": expr}

    return edit


def _experiment(vm_id: int) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        config["hub:experiments"] = [
            {"name": "alpha", "checkpoint": "hub-" + "a" * 32, "vmId": vm_id, "params": {"k": "v"}}
        ]

    return edit


def _domain_hubs(first_vm_id: int) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        config["hub:domainHubs"] = [
            {"name": name, "type": kind, "label": name.title(), "vmId": first_vm_id + i}
            for i, (name, kind) in enumerate(
                [("acme", "client"), ("apollo", "project"), ("eu", "geographic")]
            )
        ]
        config["hub:quotas"] = {**config["hub:quotas"], "vms": 10, "cores": 64, "memoryMib": 131072}

    return edit


# (stack, variant, edit): the committed stack files as they are, and with every kind of hub and a
# few schedules hubinfra accepts (including ones its old regex refused and the runtime runs).
STACK_VARIANTS: list[tuple[str, str, Edit | None]] = [
    ("dev", "as committed", None),
    ("prod", "as committed", None),
    ("dev", "domain hubs", _domain_hubs(1161)),
    ("dev", "client hub type", lambda c: c.update({"hub:hubType": "client"})),
    ("prod", "experiment and domain hubs", _edits(_experiment(2100), _domain_hubs(2161))),
    ("prod", "weekday schedule", _schedule("30 2 * * mon-fri")),
    ("prod", "leap-day schedule", _schedule("0 0 29 2 *")),
    ("dev", "quarter-hourly schedule", _schedule("*/15 * * * *")),
]


@pytest.mark.parametrize(
    ("stack", "variant", "edit"), STACK_VARIANTS, ids=[f"{s}-{v}" for s, v, _ in STACK_VARIANTS]
)
def test_every_settings_file_hubinfra_renders_boots_the_runtime(
    stack: str,
    variant: str,
    edit: Edit | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    clean_env: None,
) -> None:
    run = run_program(stack, edit=edit)
    assert run.exit_code is None, run.errors
    snippets = [
        r for r in run.of_type("proxmoxve:index/fileLegacy:FileLegacy") if r.name.endswith("-user-data")
    ]
    assert snippets, "the program renders at least the main Hub's settings"
    loaded: dict[str, Settings] = {}
    for snippet in snippets:
        files = {
            f["path"]: f["content"]
            for f in parse_user_data(snippet.inputs["sourceRaw"]["data"])["write_files"]
        }
        written = yaml.safe_load(files[SETTINGS_PATH])
        settings = load_file(tmp_path / f"{snippet.name}.yaml", files[SETTINGS_PATH], monkeypatch)
        # What hubinfra wrote is what the runtime runs with, and it is a pair the rule allows.
        assert settings.environment == written["environment"]
        assert settings.effective_hub_type == written["hub_type"]
        assert settings.effective_schedule == written["checkpoint_schedule"]
        loaded[snippet.name] = settings
    kinds = {(s.environment.value, s.effective_hub_type.value) for s in loaded.values()}
    expected_env = "production" if stack == "prod" else "development"
    assert (expected_env, "client" if variant == "client hub type" else stack_hub_type(stack)) in kinds
    if "experiment" in variant:
        assert ("experimental", EXPERIMENT_HUB_TYPE.value) in kinds
    if "domain hubs" in variant:
        assert {(expected_env, t) for t in ("client", "project", "geographic")} <= kinds


def stack_hub_type(stack: str) -> str:
    return {"dev": "development", "prod": "production"}[stack]


# Cron fields drawn from a range a little wider than any field allows, in the forms crontab knows.
_numbers = st.integers(min_value=0, max_value=65).map(str)
_atoms = st.one_of(
    st.just("*"),
    _numbers,
    st.tuples(_numbers, _numbers).map("-".join),
    st.sampled_from(["mon", "fri", "jan", "L", "?"]),
)
_field = st.one_of(
    _atoms,
    st.tuples(_atoms, st.integers(min_value=1, max_value=40)).map(lambda p: f"{p[0]}/{p[1]}"),
    st.lists(_atoms, min_size=2, max_size=3).map(",".join),
)
_cron = st.lists(_field, min_size=4, max_size=6).map(" ".join)
# Day and month pairs that exist only in some months (or none): the "never fires" corner.
_rare_days = st.tuples(
    st.sampled_from(["29", "30", "31", "28-31"]), st.sampled_from(["2", "4", "2,4", "*"])
).map(lambda p: f"0 0 {p[0]} {p[1]} *")
SCHEDULES = st.one_of(_cron, _rare_days, st.sampled_from(["manual", "Manual", "", "0 0 * * *", "99 0 * * *"]))


def _hubinfra_accepts_schedule(value: str) -> bool:
    try:
        CheckpointPolicy(schedule=value)
    except ValidationError:
        return False
    return True


def _runtime_accepts_schedule(value: str) -> bool:
    try:
        load_settings(checkpoint_schedule=value)
    except SettingsError as exc:
        assert exc.setting == "HUB_CHECKPOINT_SCHEDULE", exc
        return False
    return True


def test_hubinfra_and_the_runtime_accept_the_same_schedules(clean_env: None) -> None:
    @hypothesis_settings(max_examples=300, deadline=None, database=None)
    @given(SCHEDULES)
    def check(value: str) -> None:
        assert _hubinfra_accepts_schedule(value) == _runtime_accepts_schedule(value), value

    check()


SNAPSHOT_NAMES = st.one_of(
    st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,44}", fullmatch=True),
    st.text(alphabet=string.ascii_letters + string.digits + "_-. é", max_size=45),
    st.sampled_from(["current", "pending"]).flatmap(
        lambda word: st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
            lambda upper: "".join(c.upper() if u else c for c, u in zip(word, upper, strict=True))
        )
    ),
)


def _hubinfra_accepts_checkpoint(name: str) -> bool:
    try:
        Experiment.model_validate({"name": "alpha", "checkpoint": name, "vmId": 1150})
    except ValidationError:
        return False
    return True


@hypothesis_settings(max_examples=500, deadline=None, database=None)
@given(SNAPSHOT_NAMES)
def test_hubinfra_and_the_runtime_accept_the_same_snapshot_names(name: str) -> None:
    assert _hubinfra_accepts_checkpoint(name) == valid_pve_snapname(name), name


def test_clone_with_inherited_settings_refuses_to_touch_proxmox(
    sqlite_hubenv: HubEnv, pve: Any, tmp_path: Path
) -> None:
    machine = tmp_path / "product_uuid"
    machine.write_text("0E9C2B41-1111-4222-8333-944455566677\n")  # a clone: Proxmox gave it a new uuid
    result = sqlite_hubenv.run(
        "checkpoint", "create", HUB_VM_UUID=VM_UUID, HUB_PRODUCT_UUID_FILE=str(machine)
    )
    assert result.returncode == 2
    line = one_line_error(result.stderr)
    assert "HUB_VM_UUID" in line and "clone" in line
    assert hub_snapshots(pve) == {} and pve.requests == []

    machine.write_text(VM_UUID.upper() + "\n")  # the VM the settings were written for
    ok = sqlite_hubenv.run("checkpoint", "create", HUB_VM_UUID=VM_UUID, HUB_PRODUCT_UUID_FILE=str(machine))
    assert ok.returncode == 0, ok.stderr
    assert len(hub_snapshots(pve)) == 1
