"""Checkpoint many VMs at once: bounded overall and per node, each VM on its own.

Each VM goes through the one ``CheckpointService.create`` (the three-step protocol, the VM lock,
audit, retention by label), so a fleet checkpoint is exactly N single checkpoints, run side by side.
What this module adds is only the scheduling:

- at most ``max_parallel`` VMs in flight overall and ``per_node`` on any one node (a snapshot loads
  its node's storage; PVE runs each as a worker on that node). A dispatcher hands out the next VM
  whose node has room, so a node at its limit never holds up VMs of another node (no head-of-line
  blocking), which is what keeps the makespan near the ideal for the limits;
- one VM's trouble is that VM's outcome: a failed snapshot, a VM lock held past
  ``HUB_LOCK_WAIT_SECONDS`` (the same lock semantics as a single checkpoint), a VM gone since the
  listing, even a bug, becomes a ``failed`` result and the rest go on;
- each worker thread has its own Proxmox client (its own HTTP session: a requests session is not
  documented as thread-safe, and a shared urllib3 pool smaller than the thread count would log
  warnings); the VM locator is shared, so every VM is located from the one cluster listing.

The node used for the per-node bound is the one the listing showed; the checkpoint itself resolves
the VM's node again inside its lock, as always (a VM may have migrated since).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol, TypeVar

from runtime.checkpoints.errors import CheckpointError, CheckpointPending
from runtime.checkpoints.records import CheckpointKind
from runtime.checkpoints.service import CheckpointService
from runtime.errors import HubError, UsageError
from runtime.fleet import selection
from runtime.fleet.records import FleetReport, Outcome, OutcomeStatus, Selector, Target

if TYPE_CHECKING:
    from hubcore.proxmox import ProxmoxClient
    from runtime.db import Database
    from runtime.locks import VmLocks
    from runtime.settings import Settings
    from runtime.vms import VmLocator
    from runtime.wiring import Services

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MAX_PARALLEL = 8
DEFAULT_PER_NODE = 4
MAX_PARALLEL = 64  # threads, each with its own HTTP session: a bound the operator cannot exceed by typo


class FleetEvents(Protocol):
    """What a caller sees while a fleet runs (the CLI's progress bar, a job's progress lines).
    Called from worker threads; must not raise (a display that does is logged and ignored)."""

    def selected(self, targets: list[Target]) -> None: ...

    def started(self, target: Target) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...


class _Silent:
    def selected(self, targets: list[Target]) -> None:
        pass

    def started(self, target: Target) -> None:
        pass

    def finished(self, outcome: Outcome) -> None:
        pass


class FleetRunner:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        locks: VmLocks,
        vms: VmLocator,
        client: Callable[[], ProxmoxClient],
        actor: str = "hubctl",
    ) -> None:
        self.settings = settings
        self.db = db
        self.locks = locks
        self.vms = vms
        self.client = client  # a new Proxmox client for one worker thread
        self.actor = actor
        self._local = threading.local()

    @classmethod
    def build(cls, services: Services, *, actor: str) -> FleetRunner:
        def client() -> ProxmoxClient:
            from hubcore.proxmox import ProxmoxClient

            return ProxmoxClient.from_access(
                services.settings.proxmox_access(), observer=services.proxmox_observer
            )

        return cls(
            settings=services.settings,
            db=services.ready_db(),
            locks=services.locks,
            # Through services.proxmox: the identity check (runtime.identity) runs once, here,
            # before any worker's own client exists.
            vms=services.vms,
            client=client,
            actor=actor,
        )

    def select(self, selector: Selector) -> list[Target]:
        """The owned VMs the selector picks, from one fresh cluster listing."""
        return selection.targets(self.vms, selector, settings=self.settings)

    def checkpoint(
        self,
        selector: Selector,
        *,
        max_parallel: int = DEFAULT_MAX_PARALLEL,
        per_node: int = DEFAULT_PER_NODE,
        kind: CheckpointKind = CheckpointKind.MANUAL,
        label: str | None = None,
        vmstate: bool | None = None,
        reason: str | None = None,
        events: FleetEvents | None = None,
    ) -> FleetReport:
        """Checkpoint every VM the selector picks; never raises for one VM's failure."""
        _check_limits(max_parallel, per_node)
        if kind is CheckpointKind.IMPORTED:
            raise UsageError("--kind: 'imported' is reserved for checkpoints found by reconcile")
        events = events or _Silent()
        started = time.monotonic()
        targets = self.select(selector)
        events.selected(targets)
        report = FleetReport(selector=selector, max_parallel=max_parallel, per_node=per_node)
        why = reason or f"fleet checkpoint of {selector.describe()}"

        def one(target: Target) -> Outcome:
            return self._checkpoint_one(target, kind=kind, label=label, vmstate=vmstate, reason=why)

        report.results = self._dispatch(
            targets, one, max_parallel=max_parallel, per_node=per_node, events=events
        )
        report.seconds = time.monotonic() - started
        return report

    # ------------------------------------------------------------- scheduling

    def _dispatch(
        self,
        targets: list[Target],
        work: Callable[[Target], Outcome],
        *,
        max_parallel: int,
        per_node: int,
        events: FleetEvents,
    ) -> list[Outcome]:
        pending = list(targets)
        in_flight: Counter[str] = Counter()
        results: list[Outcome] = []
        changed = threading.Condition()

        def run(target: Target) -> None:
            final = Outcome(target.vm_id, target.node, OutcomeStatus.FAILED, "interrupted")
            try:
                _quietly(events.started, target)
                final = work(target)
            finally:  # the slot comes back whatever happened, or the dispatcher would wait for ever
                with changed:
                    in_flight[target.node] -= 1
                    results.append(final)
                    changed.notify()
                _quietly(events.finished, final)

        workers = max(1, min(max_parallel, len(targets)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleet") as pool, changed:
            while pending or in_flight.total():
                # Hand out every VM that fits now: overall room, and room on its own node.
                while pending and in_flight.total() < max_parallel:
                    index = next((i for i, t in enumerate(pending) if in_flight[t.node] < per_node), None)
                    if index is None:
                        break
                    target = pending.pop(index)
                    in_flight[target.node] += 1
                    pool.submit(run, target)
                changed.wait()
        return results

    # ------------------------------------------------------------------ one VM

    def _service(self) -> CheckpointService:
        svc: CheckpointService | None = getattr(self._local, "service", None)
        if svc is None:
            svc = CheckpointService(
                settings=self.settings,
                db=self.db,
                proxmox=self.client(),
                locks=self.locks,
                vms=self.vms,
                actor=self.actor,
            )
            self._local.service = svc
        return svc

    def _checkpoint_one(
        self, target: Target, *, kind: CheckpointKind, label: str | None, vmstate: bool | None, reason: str
    ) -> Outcome:
        began = time.monotonic()

        def outcome(status: OutcomeStatus, error: str | None = None, uuid: str | None = None) -> Outcome:
            return Outcome(target.vm_id, target.node, status, error, uuid, time.monotonic() - began)

        try:
            record = self._service().create(
                kind=kind, reason=reason, vmid=target.vm_id, label=label, vmstate=vmstate
            )
        except CheckpointPending as exc:
            return outcome(OutcomeStatus.PENDING, str(exc), exc.uuid)
        except CheckpointError as exc:
            return outcome(OutcomeStatus.FAILED, str(exc), exc.checkpoint.uuid)
        except HubError as exc:  # the VM lock busy, the VM gone, Proxmox or the database down
            return outcome(OutcomeStatus.FAILED, str(exc))
        except Exception as exc:  # a bug: in the log with its traceback; the fleet goes on
            log.exception("fleet checkpoint of VM %s crashed", target.vm_id)
            return outcome(OutcomeStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}")
        return outcome(OutcomeStatus.COMPLETED, None, record.uuid)


def _check_limits(max_parallel: int, per_node: int) -> None:
    if not 1 <= max_parallel <= MAX_PARALLEL:
        raise UsageError(f"--max-parallel: between 1 and {MAX_PARALLEL}, not {max_parallel}")
    if not 1 <= per_node <= MAX_PARALLEL:
        raise UsageError(f"--per-node: between 1 and {MAX_PARALLEL}, not {per_node}")


def _quietly(call: Callable[[T], None], value: T) -> None:
    try:
        call(value)
    except Exception:  # a display must never stop the fleet
        log.exception("fleet progress display failed")
