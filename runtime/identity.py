"""Is this the VM the settings were written for?

An experimental hub is a full clone of the Hub VM's disk, so it boots with the source Hub's settings
file: its token and its vmid. Acting on them would let an experiment checkpoint, prune or roll back
the production Hub. hubinfra writes ``vm_uuid`` (the SMBIOS uuid it pins on the VM) into the file;
Proxmox gives every clone a new uuid. The runtime compares the two before its first Proxmox call.
``deploy/hub-identity-check`` does the same before the service starts; this is the second line.
"""

from __future__ import annotations

from runtime.errors import SettingsError
from runtime.settings import Settings, env_name


def verify_identity(settings: Settings) -> None:
    """Raise SettingsError (exit 2, naming HUB_VM_UUID) when the settings belong to another VM.

    Without ``vm_uuid`` (the lab, tests, a hand-written config) there is nothing to compare. When the
    machine exposes no SMBIOS uuid (not a VM, or a container without /sys) we cannot tell, and say so
    only if a uuid was promised.
    """
    if settings.vm_uuid is None:
        return
    try:
        have = settings.product_uuid_file.read_text(encoding="ascii").strip().lower()
    except OSError as exc:
        raise SettingsError(
            env_name("vm_uuid"),
            f"cannot read this machine's uuid from {settings.product_uuid_file} ({exc.strerror}); "
            "refusing to act on settings that may belong to another VM",
        ) from None
    want = settings.vm_uuid.strip().lower()
    if have != want:
        raise SettingsError(
            env_name("vm_uuid"),
            f"these settings were written for VM uuid {want} but this machine is {have} (a clone of the "
            "Hub?); refusing to touch Proxmox",
        )
