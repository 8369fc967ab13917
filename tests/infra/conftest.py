from __future__ import annotations

import pytest

from tests.infra.harness import Run, run_program


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
