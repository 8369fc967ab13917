"""Builds the runtime's services from the one Settings object, for the CLI and the service.

Nothing here reads the environment: settings arrive already loaded and are handed down explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from hubcore.proxmox import ProxmoxClient
from runtime.checkpoints.locking import FileLocks, RedisLocks, locks_for
from runtime.checkpoints.queries import CheckpointQueries
from runtime.checkpoints.reconcile import Reconciler
from runtime.checkpoints.service import CheckpointService
from runtime.db import Database
from runtime.identity import verify_identity
from runtime.settings import Settings


def _quiet(_: str) -> None:
    pass


@dataclass
class Hub:
    settings: Settings
    actor: str = "hubctl"
    progress: Callable[[str], None] = field(default=_quiet)

    @cached_property
    def db(self) -> Database:
        return Database.from_settings(self.settings)

    @cached_property
    def proxmox(self) -> ProxmoxClient:
        verify_identity(self.settings)
        return ProxmoxClient.from_access(self.settings.proxmox_access())

    @cached_property
    def locks(self) -> FileLocks | RedisLocks:
        return locks_for(self.settings)

    def ready_db(self) -> Database:
        self.db.ensure_ready()
        return self.db

    @cached_property
    def checkpoints(self) -> CheckpointService:
        return self.checkpoint_service(progress=self.progress, actor=self.actor)

    def checkpoint_service(self, *, progress: Callable[[str], None], actor: str) -> CheckpointService:
        """A checkpoint service sharing this Hub's database, client and locks (one per job, so each
        job's progress lands on its own row)."""
        self.settings.require_proxmox()
        return CheckpointService(
            settings=self.settings,
            db=self.ready_db(),
            proxmox=self.proxmox,
            locks=self.locks,
            actor=actor,
            progress=progress,
        )

    def checkpoints_readonly(self) -> CheckpointQueries:
        return CheckpointQueries(self.ready_db())

    @cached_property
    def reconciler(self) -> Reconciler:
        return self.reconciler_for(actor=self.actor)

    def reconciler_for(self, *, actor: str) -> Reconciler:
        self.settings.require_proxmox()
        return Reconciler(
            settings=self.settings, db=self.ready_db(), proxmox=self.proxmox, locks=self.locks, actor=actor
        )

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
