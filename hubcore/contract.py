"""The values that cross from a stack's config into the runtime's settings, each with ONE rule.

hubinfra validates a stack's config on an operator's machine at `pulumi up`; the runtime validates
the settings file hubinfra wrote, inside the VM, at boot. When the two rules differ, `pulumi up`
succeeds and the Hub's service then exits 2 on every start. So each value that crosses has its rule
here, and both sides call it:

- the checkpoint schedule: `manual`, or a 5-field cron expression as the runtime's scheduler
  (APScheduler's `CronTrigger.from_crontab`, in UTC) parses it, and one that fires at all;
- a Proxmox snapshot name (an experiment's `checkpoint`, the Hub's own `hub-<hex>` names);
- an SDN zone or vnet id (the stack's vnets become the runtime's `task_networks`);
- the environment and the hub type, and which pairs of them a Hub may run with.

Rules raise ``ValueError`` with a message that does not name the key: each side names it in its own
spelling (`hub:checkpoints.schedule` in the stack file, `HUB_CHECKPOINT_SCHEDULE` in the runtime).
This module imports neither ``hubinfra`` nor ``runtime``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum

MANUAL = "manual"
SCHEDULE_TIMEZONE = "UTC"
SNAPSHOT_NAME_MAX = 40
# PVE refuses these as snapshot names, in any case: they name the VM's live state and pending changes.
RESERVED_SNAPSHOT_NAMES = frozenset({"current", "pending"})
_SNAPSHOT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
# An expression that fires only on 29 February fires within 4 years; one that has not fired within
# this horizon (e.g. 30 February) never will. Asked from now and again from a horizon later, so the
# answer does not hinge on where in the leap-year cycle today falls.
_FIRES_WITHIN = timedelta(days=5 * 366)


class Environment(StrEnum):
    """How a Hub runs: production safety rules, development, or a disposable experimental clone."""

    PRODUCTION = "production"
    DEVELOPMENT = "development"
    EXPERIMENTAL = "experimental"


class HubType(StrEnum):
    """What a Hub is for: the production or development Hub of a stack, or a domain hub."""

    PRODUCTION = "production"
    DEVELOPMENT = "development"
    CLIENT = "client"
    PROJECT = "project"
    GEOGRAPHIC = "geographic"


DOMAIN_HUB_TYPES = frozenset({HubType.CLIENT, HubType.PROJECT, HubType.GEOGRAPHIC})

# The hub type an experimental hub runs as, whatever it was cloned from: a clone is never the
# production Hub (that one is protected and checkpointed on a schedule), and hubinfra writes exactly
# this into every experiment's settings.
EXPERIMENT_HUB_TYPE = HubType.DEVELOPMENT

# Which hub types may run in which environment. The production Hub runs only in production and the
# development Hub never does; a domain hub takes its stack's environment (production or development);
# an experimental hub is always EXPERIMENT_HUB_TYPE.
HUB_TYPES_BY_ENVIRONMENT: Mapping[Environment, frozenset[HubType]] = {
    Environment.PRODUCTION: frozenset({HubType.PRODUCTION, *DOMAIN_HUB_TYPES}),
    Environment.DEVELOPMENT: frozenset({HubType.DEVELOPMENT, *DOMAIN_HUB_TYPES}),
    Environment.EXPERIMENTAL: frozenset({EXPERIMENT_HUB_TYPE}),
}

# The hub type a Hub runs as when its settings name none.
DEFAULT_HUB_TYPE: Mapping[Environment, HubType] = {
    Environment.PRODUCTION: HubType.PRODUCTION,
    Environment.DEVELOPMENT: HubType.DEVELOPMENT,
    Environment.EXPERIMENTAL: EXPERIMENT_HUB_TYPE,
}


def check_hub_type(*, environment: Environment, hub_type: HubType) -> None:
    """Refuse a hub type that cannot run in `environment` (the one pairing rule of both sides)."""
    allowed = HUB_TYPES_BY_ENVIRONMENT[environment]
    if hub_type not in allowed:
        names = ", ".join(f"'{t}'" for t in HubType if t in allowed)
        raise ValueError(f"'{hub_type}' cannot run in the {environment} environment (allowed: {names})")


def validate_schedule(value: str) -> str:
    """`manual`, or a 5-field cron expression in UTC, parsed by the runtime's own scheduler, that fires."""
    if value == MANUAL:
        return value
    # Imported here, not at the top: every settings load runs this module, and most Hubs' schedule
    # is `manual` or unset, which needs no scheduler (~60 ms of imports on each `hubctl` call).
    from apscheduler.triggers.cron import CronTrigger  # pyright: ignore[reportMissingTypeStubs]

    problem: str | None = None
    try:
        trigger = CronTrigger.from_crontab(value, timezone=SCHEDULE_TIMEZONE)  # pyright: ignore[reportUnknownMemberType]
    except ValueError as exc:
        problem = str(exc)
    else:
        now = datetime.now(UTC)
        for start in (now, now + _FIRES_WITHIN):
            if trigger.get_next_fire_time(None, start) is None:  # pyright: ignore[reportUnknownMemberType]
                problem = "it never fires"
                break
    if problem is not None:
        raise ValueError(
            f"must be '{MANUAL}' or a 5-field cron expression in UTC that fires, "
            f"such as '0 0 * * *' ({problem})"
        )
    return value


def snapshot_name_problem(name: str) -> str | None:
    """Why PVE would refuse `name` as a snapshot name, or None when it is valid."""
    if len(name) > SNAPSHOT_NAME_MAX:
        return f"snapshot names are at most {SNAPSHOT_NAME_MAX} characters"
    if not _SNAPSHOT_NAME.fullmatch(name):
        return f"snapshot names match {_SNAPSHOT_NAME.pattern}"
    if name.lower() in RESERVED_SNAPSHOT_NAMES:
        return f"'{name}' is reserved by Proxmox (in any case)"
    return None


def validate_snapshot_name(name: str) -> str:
    """PVE's snapshot-name rule: raises ValueError saying what is wrong."""
    problem = snapshot_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


def is_valid_snapshot_name(name: str) -> bool:
    return snapshot_name_problem(name) is None


# PVE's `pve-sdn-zone-id` and `pve-sdn-vnet-id` (pve-network src/PVE/Network/SDN/Zones/Plugin.pm and
# src/PVE/Network/SDN/VnetPlugin.pm): pattern [a-zA-Z][a-zA-Z0-9]*[a-zA-Z0-9], 2 to 8 characters.
# Lowercase only here: the ids also name firewall ipsets and security groups, and one spelling per id
# keeps `hubdev` and `HubDev` from being two zones to PVE but one to a reader.
SDN_ID_MIN = 2
SDN_ID_MAX = 8
SDN_ID_PATTERN = r"^[a-z][a-z0-9]{1,7}$"
_SDN_ID = re.compile(SDN_ID_PATTERN)


def validate_sdn_id(value: str) -> str:
    """PVE's rule for SDN zone and vnet ids (2-8 characters), lowercase: raises ValueError."""
    if not _SDN_ID.fullmatch(value):
        raise ValueError(
            f"SDN ids are {SDN_ID_MIN}-{SDN_ID_MAX} characters, a lowercase letter then lowercase "
            f"letters or digits (PVE pve-sdn-zone-id / pve-sdn-vnet-id); got {value!r}"
        )
    return value
