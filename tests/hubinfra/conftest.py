from __future__ import annotations

from typing import Any

import pytest

from tests.hubinfra.harness import Run, run_program


@pytest.fixture(scope="session")
def dev() -> Run:
    run = run_program("dev")
    assert run.exit_code is None, run.errors
    return run


@pytest.fixture(scope="session")
def prod() -> Run:
    run = run_program("prod")
    assert run.exit_code is None, run.errors
    return run


@pytest.fixture(scope="session")
def prod_exp() -> Run:
    """prod with one experimental hub and one domain hub: the cluster firewall's API rules in play."""

    def add(config: dict[str, Any]) -> None:
        config["hub:experiments"] = [{"name": "alpha", "checkpoint": "hub-" + "a" * 32, "vmId": 2100}]
        config["hub:domainHubs"] = [{"name": "acme", "type": "client", "label": "ACME", "vmId": 2200}]

    run = run_program("prod", edit=add)
    assert run.exit_code is None, run.errors
    return run


@pytest.fixture(scope="session")
def dev_exp() -> Run:
    """dev with the experiment docs/operator-guide.md shows (the committed file declares none)."""

    def add(config: dict[str, Any]) -> None:
        config["hub:experiments"] = [
            {
                "name": "faster-gate",
                "checkpoint": "hub-0123456789abcdef0123456789abcdef",
                "vmId": 1150,
                "params": {"gate_timeout_seconds": 120},
            }
        ]

    run = run_program("dev", edit=add)
    assert run.exit_code is None, run.errors
    return run


@pytest.fixture(scope="session")
def prod_sentinel() -> Run:
    """prod with hub:sentinel enabled and its VM (issue 10)."""

    def add(config: dict[str, Any]) -> None:
        config["hub:sentinel"] = {"enabled": True, "vm": {"vmId": 150, "ipv4Address": "10.20.0.15/24"}}

    run = run_program("prod", edit=add)
    assert run.exit_code is None, run.errors
    return run
