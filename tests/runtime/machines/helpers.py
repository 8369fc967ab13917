"""Shared helpers for the machines tests (a module: tests import it)."""

from __future__ import annotations

from typing import Any

from tests.runtime.machines.conftest import FOREIGN


def writes(pve: Any, since: int = 0) -> list[tuple[str, str]]:
    """Every non-GET request fakepve saw since index ``since``: what tried to change the cluster."""
    return [(m, p) for m, p, _ in pve.requests[since:] if m != "GET"]


def untouched_foreign(pve: Any) -> None:
    """The foreign VM in the Hub's pool: no write ever aimed at it, and it is as it was."""
    assert not [r for r in writes(pve) if f"/qemu/{FOREIGN}" in r[1]], writes(pve)
    vm = pve.vm(FOREIGN)
    assert vm is not None and vm.status == "running" and vm.config["cores"] == 2


def machine_vms(pve: Any, name: str | None = None) -> list[Any]:
    return [
        vm
        for vm in pve.vms
        if "hub-machine-uuid" in str(vm.config.get("description", "")) and (name is None or vm.name == name)
    ]


def wait_paused(process: Any, failpoint: str, *, timeout: float = 60) -> None:
    """Wait until ``process`` announced the failpoint and has actually stopped itself (state T in
    /proc): a SIGCONT sent between its announcement and its SIGSTOP would be lost."""
    import time

    line = process.stderr.readline()
    while line and f"failpoint {failpoint} reached" not in line:
        line = process.stderr.readline()
    assert f"failpoint {failpoint} reached" in line, f"never reached {failpoint}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{process.pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.01)
    raise AssertionError(f"process {process.pid} did not stop at {failpoint}")
