"""The program evaluates with the cyclic garbage collector off (hubinfra/evaluation.py).

Its cost per extra hub grew with the stack while the collector ran (docs/performance.md, "Pulumi
program"); these check that no automatic collection happens while the program builds its resources,
that the check would see one if the tuning were gone, and that the harness gives the test process
its collector back."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import hubinfra.evaluation
from benchmarks.infra_eval import extra_hubs
from tests.hubinfra.harness import MAIN, run_program

PROGRAM_FILES = (str(MAIN), str(Path(hubinfra.evaluation.__file__).parent))


def _in_program(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith(PROGRAM_FILES):
            return True
        frame = frame.f_back
    return False


def collections_inside_program(hubs: int) -> int:
    """Automatic collections started while the program's own code (or a component's) was running."""
    run_program("prod")  # the program's imports (made before it tunes the collector) are cached
    seen: list[int] = []

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and _in_program(sys._getframe(1)):
            seen.append(info["generation"])

    gc.callbacks.append(callback)
    try:
        run = run_program("prod", edit=extra_hubs(hubs))
    finally:
        gc.callbacks.remove(callback)
    assert run.exit_code is None, run.errors
    return len(seen)


def test_the_program_evaluates_without_automatic_collections() -> None:
    assert collections_inside_program(10) == 0


def test_the_check_sees_collections_when_the_tuning_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hubinfra.evaluation, "tune_gc_for_evaluation", lambda: None)
    assert collections_inside_program(10) > 0


def test_the_harness_puts_the_collector_back() -> None:
    thresholds = gc.get_threshold()
    assert gc.isenabled()
    run_program("prod")
    assert gc.isenabled()
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == 0
