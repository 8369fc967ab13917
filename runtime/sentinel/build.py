"""The sentinel built from settings: its database, the Proxmox client, the alerter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.sentinel.alerts import Alerter, apprise_delivery
from runtime.sentinel.service import Policy, Sentinel
from runtime.sentinel.store import SentinelStore
from runtime.settings import Settings


def build_sentinel(
    settings: Settings, *, hub_url: str, progress: Callable[[str], None] = lambda _l: None, **overrides: Any
) -> Sentinel:
    from hubcore.proxmox import ProxmoxClient  # requests, proxmoxer: only when the sentinel runs

    proxmox = ProxmoxClient.from_access(settings.proxmox_access())
    urls = settings.alert_urls.get_secret_value() if settings.alert_urls is not None else None
    try:
        deliver = apprise_delivery(urls) if urls else None
    except ValueError as exc:
        from runtime.errors import SettingsError

        raise SettingsError("HUB_ALERT_URLS", str(exc).partition(": ")[2]) from None
    return Sentinel(
        vmid=settings.hub_vmid(),
        policy=Policy.from_settings(settings, hub_url, **overrides),
        store=SentinelStore.open(settings.database_url),
        proxmox=proxmox,
        alerter=Alerter(deliver),
        progress=progress,
    )
