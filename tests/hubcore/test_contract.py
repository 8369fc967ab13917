"""hubcore.contract: the one rule for each value that crosses from a stack's config to the runtime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hubcore.contract import (
    DEFAULT_HUB_TYPE,
    EXPERIMENT_HUB_TYPE,
    HUB_TYPES_BY_ENVIRONMENT,
    Environment,
    HubType,
    check_hub_type,
    is_valid_snapshot_name,
    validate_schedule,
    validate_snapshot_name,
)

REPO = Path(__file__).resolve().parents[2]

SCHEDULES_ACCEPTED = [
    "manual",
    "0 0 * * *",
    "*/15 * * * *",
    "0 3 * * mon-fri",  # names: the runtime's parser takes them, so the stack file may too
    "0 0 29 2 *",  # fires only in leap years, but fires
    "30 2 1,15 * *",
    " 0  0 * * * ",  # whitespace between fields, as crontab allows
]
SCHEDULES_REFUSED = [
    ("99 0 * * *", "higher than the maximum"),  # the regex used to accept it; APScheduler does not
    ("0 24 * * *", "higher than the maximum"),
    ("0 0 0 * *", "lower than the minimum"),
    ("0 0 * * 7", "higher than the maximum"),  # APScheduler's day-of-week stops at 6
    ("0 0 30 2 *", "never fires"),
    ("0 0 31 4,6,9,11 *", "never fires"),
    ("0 0 * *", "wrong number of fields"),
    ("0 0 * * * *", "wrong number of fields"),
    ("daily", "wrong number of fields"),
    ("Manual", "wrong number of fields"),
    ("", "wrong number of fields"),
]


@pytest.mark.parametrize("value", SCHEDULES_ACCEPTED)
def test_schedules_the_runtime_can_run_are_accepted(value: str) -> None:
    assert validate_schedule(value) == value


@pytest.mark.parametrize(("value", "why"), SCHEDULES_REFUSED, ids=[v for v, _ in SCHEDULES_REFUSED])
def test_schedules_are_refused_with_one_message(value: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_schedule(value)
    text = str(info.value)
    assert text.startswith("must be 'manual' or a 5-field cron expression in UTC that fires"), text
    assert why in text.lower(), text
    assert "\n" not in text


@pytest.mark.parametrize(
    "name", ["a", "hub-" + "0" * 32, "Before_upgrade-2", "x" * 40, "currently", "pending1", "Z"]
)
def test_valid_snapshot_names(name: str) -> None:
    assert validate_snapshot_name(name) == name and is_valid_snapshot_name(name)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("current", "reserved"),
        ("Current", "reserved"),  # PVE compares case-insensitively
        ("PENDING", "reserved"),
        ("x" * 41, "at most 40"),
        ("1abc", "match"),
        ("-a", "match"),
        ("a.b", "match"),
        ("a b", "match"),
        ("", "match"),
        ("é", "match"),
    ],
)
def test_invalid_snapshot_names(name: str, why: str) -> None:
    assert not is_valid_snapshot_name(name)
    with pytest.raises(ValueError, match=why):
        validate_snapshot_name(name)


# Written out, not derived from the module's table: this is the rule as the docs state it.
_DOMAIN = (HubType.CLIENT, HubType.PROJECT, HubType.GEOGRAPHIC)
PAIRS_ALLOWED = {
    (Environment.PRODUCTION, HubType.PRODUCTION),
    (Environment.DEVELOPMENT, HubType.DEVELOPMENT),
    # A domain hub runs in its stack's environment.
    *((Environment.PRODUCTION, t) for t in _DOMAIN),
    *((Environment.DEVELOPMENT, t) for t in _DOMAIN),
    # An experiment is a disposable clone, never the production Hub, whatever it was cloned from.
    (Environment.EXPERIMENTAL, HubType.DEVELOPMENT),
}


@pytest.mark.parametrize("environment", list(Environment))
@pytest.mark.parametrize("hub_type", list(HubType))
def test_pairing_rule(environment: Environment, hub_type: HubType) -> None:
    if (environment, hub_type) in PAIRS_ALLOWED:
        check_hub_type(environment=environment, hub_type=hub_type)
    else:
        with pytest.raises(ValueError, match=f"'{hub_type}' cannot run in the {environment} environment"):
            check_hub_type(environment=environment, hub_type=hub_type)


def test_production_hub_type_only_in_production_and_development_never_there() -> None:
    assert [env for env in Environment if HubType.PRODUCTION in HUB_TYPES_BY_ENVIRONMENT[env]] == [
        Environment.PRODUCTION
    ]
    assert HubType.DEVELOPMENT not in HUB_TYPES_BY_ENVIRONMENT[Environment.PRODUCTION]


def test_each_environments_default_hub_type_passes_the_rule() -> None:
    assert set(DEFAULT_HUB_TYPE) == set(Environment)
    for environment, hub_type in DEFAULT_HUB_TYPE.items():
        check_hub_type(environment=environment, hub_type=hub_type)
    assert DEFAULT_HUB_TYPE[Environment.EXPERIMENTAL] is EXPERIMENT_HUB_TYPE


def test_runtime_environment_is_the_contract_enum() -> None:
    from runtime.settings import Environment as RuntimeEnvironment

    assert RuntimeEnvironment is Environment


def _imported_top_packages(*modules: str) -> set[str]:
    code = (
        f"import sys, {', '.join(modules)}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_hubcore_imports_neither_half_and_hubinfra_config_never_the_runtime() -> None:
    assert not _imported_top_packages("hubcore.contract") & {"hubinfra", "runtime", "pulumi"}
    assert not _imported_top_packages("hubinfra.config", "hubinfra.cloudinit") & {"runtime", "pulumi"}
