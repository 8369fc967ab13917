"""The runtime's infrastructure handles, built once from the one Settings object.

``Services`` holds what every domain needs and nothing domain-specific: the database, the Proxmox
client (from Proxmox *access* alone, so it can act on any VM), the VM lock and the VM locator. Domain
services (checkpoints, health, machines, ...) are built from it by their own packages, so this module
imports no domain. Nothing here reads the environment: settings arrive loaded and are handed down.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from runtime.db import Database
from runtime.heartbeats import Heartbeats
from runtime.identity import verify_identity
from runtime.locks import LockObserver, ObservedLocks, VmLocks, locks_for
from runtime.settings import Settings
from runtime.vms import VmLocator

if TYPE_CHECKING:
    from hubcore.proxmox import ProxmoxClient
    from hubcore.proxmox.client import ProxmoxObserver


class Services:
    """Lazily built, shared handles: a command that needs only the database never builds a client."""

    def __init__(
        self,
        settings: Settings,
        *,
        proxmox_observer: ProxmoxObserver | None = None,
        lock_observer: LockObserver | None = None,
    ) -> None:
        self.settings = settings
        # The service passes its metrics here (``runtime.metrics``); a CLI command passes none.
        self.proxmox_observer = proxmox_observer
        self.lock_observer = lock_observer

    @cached_property
    def db(self) -> Database:
        return Database.from_settings(self.settings)

    @cached_property
    def proxmox(self) -> ProxmoxClient:
        from hubcore.proxmox import ProxmoxClient  # requests, urllib3, proxmoxer: only when used

        verify_identity(self.settings)
        return ProxmoxClient.from_access(self.settings.proxmox_access(), observer=self.proxmox_observer)

    @cached_property
    def locks(self) -> VmLocks:
        locks = locks_for(self.settings)
        return locks if self.lock_observer is None else ObservedLocks(locks, self.lock_observer)

    @cached_property
    def vms(self) -> VmLocator:
        return VmLocator(self.proxmox, hub_node=self.settings.node)

    @cached_property
    def heartbeats(self) -> Heartbeats:
        """This process's scheduler and worker threads say here that they live (health reads it)."""
        return Heartbeats()

    def ready_db(self) -> Database:
        self.db.ensure_ready()
        return self.db

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
