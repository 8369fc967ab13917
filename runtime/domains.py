"""The registry of domains: where the runtime learns what it can do.

Each domain is one entry. Its core lives in its own package (``runtime/checkpoints/``), which never
imports an edge; its edges live with the edges (``runtime/api/<noun>.py``, ``runtime/cli/<noun>.py``)
and are named here by import path, so a command that needs none of them imports none of them (the
CLI's ``--help`` lists sub-commands from this table without loading them).

Adding a domain: write the package, its ``jobs.py`` (``KINDS``), its router and its CLI sub-app, a
migration if it has tables, then add one ``Domain(...)`` line below. See docs/architecture.md.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import APIRouter

    from runtime.jobs.registry import JobKinds


@dataclass(frozen=True, slots=True)
class Command:
    """A CLI sub-app: ``hubctl <name> ...``, loaded from ``target`` (``module:attribute``) on use."""

    name: str
    target: str
    help: str


@dataclass(frozen=True, slots=True)
class Domain:
    name: str
    jobs: str | None = None  # module with ``KINDS: list[JobKind]``
    routers: tuple[str, ...] = ()  # ``module:attribute`` of FastAPI APIRouters, one per noun
    commands: tuple[Command, ...] = ()


DOMAINS: tuple[Domain, ...] = (
    Domain(
        "checkpoints",
        jobs="runtime.checkpoints.jobs",
        routers=("runtime.api.checkpoints:router",),
        commands=(
            Command(
                "checkpoint",
                "runtime.cli.checkpoint:app",
                "Checkpoints of the Hub VM (Proxmox snapshots tracked in the database).",
            ),
        ),
    ),
    Domain(
        "machines",
        jobs="runtime.machines.jobs",
        routers=(
            "runtime.api.machines:router",
            "runtime.api.projects:router",
            "runtime.api.budget:router",
        ),
        commands=(
            Command(
                "machine",
                "runtime.cli.machine:app",
                "Task machines: create, list, start, stop, snapshot, destroy.",
            ),
            Command(
                "project",
                "runtime.cli.project:app",
                "Projects: limits, budgets and checkpoint schedules of task machines.",
            ),
            Command(
                "budget",
                "runtime.cli.budget:app",
                "Budgets: usage, burn rate and projected exhaustion per project.",
            ),
        ),
    ),
    Domain(
        "sentinel",
        commands=(
            Command(
                "sentinel",
                "runtime.cli.sentinel:app",
                "The sentinel: watch the Hub from outside its VM and recover it through Proxmox.",
            ),
            Command(
                "recovery",
                "runtime.cli.recovery:app",
                "Recovery events the sentinel journaled, imported by the Hub.",
            ),
        ),
    ),
    Domain(
        "fleet",
        jobs="runtime.fleet.jobs",
        routers=("runtime.api.fleet:router",),
        commands=(
            Command(
                "fleet",
                "runtime.cli.fleet:app",
                "Many of the Hub's VMs at once (checkpoint a project, a tag, or every owned VM).",
            ),
        ),
    ),
)


def load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def job_kinds() -> JobKinds:
    from runtime.jobs.registry import JobKinds

    kinds: list[Any] = []
    for domain in DOMAINS:
        if domain.jobs:
            kinds.extend(importlib.import_module(domain.jobs).KINDS)
    return JobKinds(kinds)


def routers() -> list[APIRouter]:
    return [load(target) for domain in DOMAINS for target in domain.routers]


def commands() -> list[Command]:
    return [command for domain in DOMAINS for command in domain.commands]
