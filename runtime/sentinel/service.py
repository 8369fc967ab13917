"""The sentinel's engine: assess the Hub, decide, and walk the recovery ladder through Proxmox.

The ladder (issue 10; docs/recovery.md):

0. a snapshot of the broken state (kind ``emergency``, reason ``pre-recovery``), never a candidate;
   if it fails the journal says so and the ladder goes on;
1. restart the Hub VM once (shutdown with timeout, stop, start), then a health gate;
2. roll back to up to 3 of the Hub's newest checkpoints (blessed ones preferred), each gated;
3. the newest blessed checkpoint at least 7 days old, gated;
4. all failed: the Hub is ``error``, one alert, and nothing more until ``hubctl sentinel reset``.

Every step is persisted (``started``) before its destructive call and again (``done``, with its
outcome) after its gate, so a sentinel killed mid-ladder resumes at the step it was in, never
earlier. A checkpoint that failed its gate is quarantined (persisted) and never tried again
automatically. Runs are capped per 24 h with a growing back-off between runs; a Proxmox fault that
says "not now" (no quorum, unreachable, locked by a backup past the lock budget) pauses the run
instead of spending a rung on it, and the next tick resumes it.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hubcore.proxmox.errors import (
    ProxmoxConflict,
    ProxmoxError,
    ProxmoxQuorumError,
    ProxmoxTaskFailed,
)
from runtime import failpoints
from runtime.sentinel import metrics
from runtime.sentinel.alerts import Alert, Alerter
from runtime.sentinel.errors import LeaseHeld, SentinelError
from runtime.sentinel.hubvm import ERROR_LEASE, MAINTENANCE_TAG, HubVm, new_emergency_name
from runtime.sentinel.probe import Probe, readiness
from runtime.sentinel.records import Action, Candidate, Event, SentinelState, Step, StepStatus
from runtime.sentinel.store import Run, SentinelStore

if TYPE_CHECKING:
    from hubcore.proxmox import ProxmoxClient
    from hubcore.proxmox.vms import VmRef
    from runtime.settings import Settings

log = logging.getLogger("hub.sentinel")

MAX_RECENT = 3  # rung 2: up to this many recent checkpoints


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Policy:
    """What the sentinel is told (settings and command-line options)."""

    hub_url: str
    gate_timeout: float = 300.0
    probe_interval: float = 15.0
    probe_timeout: float = 5.0
    critical_probes: int = 3
    max_runs_per_day: int = 3
    backoff_seconds: float = 900.0
    shutdown_timeout: float = 60.0
    old_checkpoint_days: int = 7
    task_timeout: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings, hub_url: str, **overrides: Any) -> Policy:
        values: dict[str, Any] = {
            "hub_url": hub_url,
            "gate_timeout": settings.sentinel_gate_timeout_seconds,
            "probe_interval": settings.sentinel_probe_interval_seconds,
            "probe_timeout": settings.sentinel_probe_timeout_seconds,
            "critical_probes": settings.sentinel_critical_probes,
            "max_runs_per_day": settings.sentinel_max_runs_per_day,
            "backoff_seconds": settings.sentinel_backoff_seconds,
            "shutdown_timeout": settings.sentinel_shutdown_timeout_seconds,
            "old_checkpoint_days": settings.sentinel_old_checkpoint_days,
            "task_timeout": settings.task_timeout_seconds,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def lease_ttl(self) -> timedelta:
        # Long enough for the longest step and its gate; renewed before every step.
        return timedelta(seconds=2 * self.task_timeout + self.shutdown_timeout + self.gate_timeout + 120)


@dataclass(frozen=True, slots=True)
class Assessment:
    verdict: str  # healthy | degraded | critical | maintenance | unknown
    reason: str


@dataclass(slots=True)
class Outcome:
    """What ``recover`` did: ``result`` is healthy | error | nothing | capped | backoff | lease-held |
    paused | maintenance | dry-run."""

    result: str
    detail: str
    steps: list[Step] = field(default_factory=list[Step])
    run_id: int | None = None

    def to_public(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "detail": self.detail,
            "run": self.run_id,
            "ladder": [dict(s.to_json(), description=s.describe()) for s in self.steps],
        }


class Sentinel:
    def __init__(
        self,
        *,
        vmid: int,
        policy: Policy,
        store: SentinelStore,
        proxmox: ProxmoxClient,
        alerter: Alerter,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        probe: Callable[[str, float], Probe] | None = None,
        progress: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.vmid = vmid
        self.policy = policy
        self.store = store
        self.hub = HubVm(proxmox, vmid)
        self.proxmox = proxmox
        self.alerter = alerter
        self.clock = clock
        self.sleep = sleep
        self._probe: Callable[[str, float], Probe] = probe or _http_probe
        self.progress = progress
        self.holder = store.sentinel_id()
        self.critical_streak = 0

    # ------------------------------------------------------------------ assess

    def assess(self) -> Assessment:
        """One probe of the Hub, with what Proxmox says of its VM when the Hub does not answer."""
        try:
            vm = self.hub.resource()
        except (ProxmoxError, SentinelError) as exc:
            return Assessment("unknown", f"Proxmox: {exc}")
        if MAINTENANCE_TAG in vm.tags:
            return Assessment(
                "maintenance", f"the Hub VM carries the {MAINTENANCE_TAG} tag (an operator's work)"
            )
        answer = self._probe(self.policy.hub_url, self.policy.probe_timeout)
        if answer.status is not None:
            return Assessment(answer.status, answer.detail)
        try:
            status = self.proxmox.vm_status(vm.ref)
        except ProxmoxError as exc:
            return Assessment("unknown", f"{answer.detail}; Proxmox: {exc}")
        if status.status == "running" and status.qmpstatus in (None, "running"):
            return Assessment("critical", f"hung: {answer.detail} while Proxmox says the VM runs")
        return Assessment(
            "critical",
            f"the Hub VM is {status.qmpstatus or status.status} and no operator asked ({answer.detail})",
        )

    def tick(self) -> Outcome | None:
        """One iteration of ``watch``: resume an unfinished run, or probe and act on K critical probes."""
        now = self.clock()
        if self.store.hub(self.vmid, now).state is SentinelState.ERROR:
            return None
        if self.store.open_run(self.vmid) is not None:
            return self.recover(trigger="resume")
        assessment = self.assess()
        metrics.PROBES.labels(verdict=assessment.verdict).inc()
        if assessment.verdict != "critical":
            self.critical_streak = 0
            return None
        self.critical_streak += 1
        log.warning(
            "critical probe %d/%d: %s", self.critical_streak, self.policy.critical_probes, assessment.reason
        )
        if self.critical_streak < self.policy.critical_probes:
            return None
        self.critical_streak = 0
        return self.recover(trigger=assessment.reason, settled=True)

    # ----------------------------------------------------------------- the plan

    def plan(self, ref: VmRef) -> list[Step]:
        quarantined = self.store.quarantined(self.vmid)
        candidates = [c for c in self.hub.candidates(ref) if c.snapname not in quarantined]
        name, uuid = new_emergency_name()
        steps = [
            Step(0, Action.EMERGENCY, snapname=name, checkpoint=uuid),
            Step(1, Action.RESTART),
        ]
        # Rung 2 looks at the recent ones (younger than rung 3's age): blessed first (each proved
        # healthy for the blessing window), newest first; then the newest others, three in all.
        cutoff = self.clock() - timedelta(days=self.policy.old_checkpoint_days)
        young = [c for c in candidates if c.created_at is None or c.created_at > cutoff]
        recent = [c for c in young if c.blessed][:MAX_RECENT]
        recent += [c for c in young if not c.blessed][: MAX_RECENT - len(recent)]
        steps += [_rollback(2, c) for c in recent]
        tried = {c.snapname for c in recent}
        old = [
            c
            for c in candidates
            if c.blessed and c.created_at and c.created_at <= cutoff and c.snapname not in tried
        ]
        if old:
            steps.append(_rollback(3, old[0]))
        steps.append(Step(4, Action.GIVE_UP))
        return steps

    # --------------------------------------------------------------- recovering

    def recover(self, *, trigger: str = "operator", dry_run: bool = False, settled: bool = False) -> Outcome:
        """Run the ladder once if the Hub is critical (or resume the run a killed sentinel left)."""
        now = self.clock()
        state = self.store.hub(self.vmid, now)
        if state.state is SentinelState.ERROR:
            return Outcome(
                "error",
                f"the Hub is in error since {state.since.isoformat()}: run `hubctl sentinel reset` first",
            )
        run = self.store.open_run(self.vmid)
        if run is None:
            if not settled:
                assessment = self.assess()
                if assessment.verdict == "maintenance":
                    return Outcome("maintenance", assessment.reason)
                if assessment.verdict in ("healthy", "degraded"):
                    return Outcome("nothing", f"the Hub is {assessment.verdict}: {assessment.reason}")
                if assessment.verdict == "unknown":
                    return Outcome("paused", assessment.reason)
                trigger = f"{trigger}: {assessment.reason}"
            try:
                ref = self.hub.ref()
                steps = self.plan(ref)
                if dry_run:
                    return Outcome("dry-run", f"would run {len(steps)} steps", steps)
                refusal = self._throttled(now)
                if refusal is not None:
                    if refusal.result == "capped":
                        # The Hub stays broken and the sentinel may not act: a person must know
                        # (deduplicated: once an hour at most while it lasts).
                        self.alerter.send(Alert("capped", None, "capped", refusal.detail))
                    return refusal
                self.hub.acquire_lease(ref, self.holder, now=now, ttl=self.policy.lease_ttl)
            except LeaseHeld as exc:
                return Outcome("lease-held", str(exc))
            except ProxmoxError as exc:
                # No quorum, unreachable, locked: nothing was done; the next tick tries again.
                return Outcome("paused", f"not started: {exc}")
            run = self.store.start_run(self.vmid, now=now, trigger=trigger, manual=False, steps=steps)
            self.store.set_state(self.vmid, SentinelState.RECOVERING, now, trigger)
            self._journal("run-started", None, "started", f"trigger: {trigger}", run)
        elif dry_run:
            return Outcome("dry-run", f"run {run.id} is under way; it would resume", run.steps, run.id)
        return self._walk(run)

    def rollback(self, wanted: str, *, dry_run: bool = False) -> Outcome:
        """An operator's rollback: the same path (pre-recovery snapshot, gate, journal, lease)."""
        now = self.clock()
        if self.store.open_run(self.vmid) is not None:
            raise SentinelError("a recovery run is under way; wait for it (hubctl sentinel status)")
        ref = self.hub.ref()
        target = self.hub.own_snapshot(ref, wanted)
        name, uuid = new_emergency_name()
        steps = [Step(0, Action.EMERGENCY, snapname=name, checkpoint=uuid), _rollback(2, target)]
        if dry_run:
            return Outcome("dry-run", f"would roll back to {target.snapname}", steps)
        try:
            self.hub.acquire_lease(ref, self.holder, now=now, ttl=self.policy.lease_ttl)
        except LeaseHeld as exc:
            return Outcome("lease-held", str(exc), steps)
        run = self.store.start_run(
            self.vmid, now=now, trigger=f"operator: rollback to {target.snapname}", manual=True, steps=steps
        )
        self.store.set_state(self.vmid, SentinelState.RECOVERING, now, run.trigger)
        self._journal("run-started", target.uuid, "started", f"operator's rollback to {target.snapname}", run)
        return self._walk(run)

    def reset(self) -> None:
        """A person's word that the Hub may be acted on again: state watching, the error lease gone."""
        now = self.clock()
        open_run = self.store.open_run(self.vmid)
        if open_run is not None:
            self.store.end_run(open_run, now=now, outcome="aborted")
        self.store.set_state(self.vmid, SentinelState.WATCHING, now, "reset by an operator")
        metrics.STATE.set(0)
        self._journal("reset", None, "watching", "an operator reset the sentinel", None)
        try:
            self.hub.release_lease(self.hub.ref(), None)
        except (ProxmoxError, SentinelError) as exc:
            log.warning("reset: the lease on the Hub VM could not be cleared now: %s", exc)

    # ----------------------------------------------------------------- the walk

    def _walk(self, run: Run) -> Outcome:
        try:
            ref = self.hub.ref()
        except (ProxmoxError, SentinelError) as exc:
            return Outcome("paused", f"run {run.id} paused: {exc}", run.steps, run.id)
        for step in run.steps:
            if step.status is StepStatus.DONE:
                continue
            try:
                self.hub.acquire_lease(ref, self.holder, now=self.clock(), ttl=self.policy.lease_ttl)
            except LeaseHeld as exc:
                # Our lease lapsed and another sentinel took over: it acts, we stop here for good.
                self.store.end_run(run, now=self.clock(), outcome="aborted")
                self.store.set_state(self.vmid, SentinelState.WATCHING, self.clock(), str(exc))
                return Outcome("lease-held", str(exc), run.steps, run.id)
            except ProxmoxError as exc:
                return Outcome(
                    "paused", f"run {run.id} paused before rung {step.rung}: {exc}", run.steps, run.id
                )
            step.status = StepStatus.STARTED
            self.store.save_plan(run)  # before the destructive call: a restart redoes this step
            failpoints.reached(f"sentinel.{step.action.value}.started")
            self.progress(step.describe())
            try:
                done = self._step(ref, run, step)
            except ProxmoxError as exc:
                if _not_now(exc):
                    self._journal(step.action.value, step.checkpoint, "paused", f"not now: {exc}", run)
                    return Outcome(
                        "paused", f"run {run.id} paused at rung {step.rung}: {exc}", run.steps, run.id
                    )
                raise
            step.status = StepStatus.DONE
            self.store.save_plan(run)
            metrics.STEPS.labels(action=step.action.value, outcome=step.outcome or "").inc()
            if done is not None:
                return done
        return Outcome(
            "error", "the ladder ended without a verdict", run.steps, run.id
        )  # unreachable: rung 4 ends it

    def _step(self, ref: VmRef, run: Run, step: Step) -> Outcome | None:
        if step.action is Action.EMERGENCY:
            assert step.snapname and step.checkpoint
            try:
                self.hub.emergency_snapshot(
                    ref,
                    snapname=step.snapname,
                    checkpoint=step.checkpoint,
                    now=self.clock(),
                    timeout=self.policy.task_timeout,
                )
                step.outcome = "taken"
                self._journal(
                    "emergency-snapshot",
                    step.checkpoint,
                    "taken",
                    f"{step.snapname}: the broken state kept",
                    run,
                )
            except ProxmoxError as exc:
                if isinstance(exc, ProxmoxQuorumError):
                    raise  # nothing can be written now: pause, and try the snapshot again later
                step.outcome = "failed"
                self._journal(
                    "emergency-snapshot", step.checkpoint, "failed", f"going on without it: {exc}", run
                )
            return None
        if step.action is Action.RESTART:
            try:
                self._restart(ref)
            except ProxmoxError as exc:
                if _not_now(exc):
                    raise
                step.outcome = "failed"
                self._journal("restart", None, "failed", str(exc), run)
                return None
            return self._gated(run, step, "restart")
        if step.action is Action.ROLLBACK:
            assert step.snapname
            try:
                self._rollback(ref, step)
            except ProxmoxError as exc:
                if _not_now(exc):
                    raise
                step.outcome = "failed"
                self._journal("rollback", step.checkpoint, "failed", f"{step.snapname}: {exc}", run)
                self._quarantine(run, step, f"rollback failed: {exc}")
                return None
            return self._gated(run, step, "rollback")
        return self._give_up(run, step)

    def _restart(self, ref: VmRef) -> None:
        timeout = self.policy.shutdown_timeout
        # A paused or wedged guest refuses or fails the shutdown: the stop below pulls the plug.
        with contextlib.suppress(ProxmoxTaskFailed, ProxmoxConflict):
            self.proxmox.shutdown(ref, timeout=timeout, force_stop=True)
        self.proxmox.stop(ref, timeout=self.policy.task_timeout)
        self.proxmox.start(ref, timeout=self.policy.task_timeout)

    def _rollback(self, ref: VmRef, step: Step) -> None:
        assert step.snapname
        # start=1: a snapshot without RAM state is started after the rollback; one with RAM state is
        # started from it by PVE itself (pve-guest-common src/PVE/AbstractConfig.pm snapshot_rollback
        # -> qemu-server src/PVE/QemuConfig.pm __snapshot_rollback_vm_start with `statefile`).
        self.proxmox.rollback(ref, step.snapname, start=True, timeout=self.policy.task_timeout)
        status = self.proxmox.vm_status(ref)
        if status.status == "running" and status.qmpstatus not in (None, "running"):
            # vm_start with a statefile sends `cont` and only warns if it fails (qemu-server
            # src/PVE/QemuServer.pm vm_start_nolock: `elsif ($statefile) { eval { mon_cmd(.."cont") }; warn`),
            # so a restored RAM state can be left paused: resume it.
            self.proxmox.resume(ref, timeout=self.policy.task_timeout)
        elif status.status != "running":
            self.proxmox.start(ref, timeout=self.policy.task_timeout)

    def _gated(self, run: Run, step: Step, kind: str) -> Outcome | None:
        failpoints.reached(f"sentinel.{step.action.value}.acted")
        healthy, detail = self._gate()
        step.outcome = "healthy" if healthy else "unhealthy"
        what = f"{step.snapname}: " if step.snapname else ""
        self._journal(kind, step.checkpoint, step.outcome, what + detail, run)
        if healthy:
            return self._finish(run, "healthy", f"healthy after {step.describe()}", step.checkpoint)
        if step.action is Action.ROLLBACK:
            self._quarantine(run, step, f"failed its health gate: {detail}")
        if run.manual:
            return self._finish(run, "unhealthy", f"not healthy after {step.describe()}", step.checkpoint)
        return None

    def _gate(self) -> tuple[bool, str]:
        """Healthy within the gate timeout? Probes every few seconds until then."""
        deadline = time.monotonic() + self.policy.gate_timeout
        started = self.clock()
        last = "no probe"
        every = max(0.05, min(self.policy.probe_interval, 5.0))
        while True:
            answer = self._probe(self.policy.hub_url, self.policy.probe_timeout)
            last = answer.detail
            if answer.status == "healthy":
                return True, f"healthy after {(self.clock() - started).total_seconds():.0f} s"
            elapsed = (self.clock() - started).total_seconds()
            if time.monotonic() >= deadline or elapsed >= self.policy.gate_timeout:
                return False, f"not healthy within {self.policy.gate_timeout:.0f} s (last: {last})"
            self.sleep(every)

    def _quarantine(self, run: Run, step: Step, reason: str) -> None:
        assert step.snapname
        self.store.quarantine(self.vmid, step.snapname, now=self.clock(), reason=reason)
        self._journal("quarantine", step.checkpoint, "quarantined", f"{step.snapname}: {reason}", run)

    def _give_up(self, run: Run, step: Step) -> Outcome:
        step.outcome = "error"
        return self._finish(
            run, "error", "every rung failed: the Hub is in error until `hubctl sentinel reset`", None
        )

    def _finish(self, run: Run, result: str, detail: str, checkpoint: str | None) -> Outcome:
        now = self.clock()
        self.store.end_run(run, now=now, outcome=result)
        kind = (
            "recovered" if result == "healthy" else ("error" if result == "error" else "rollback-unhealthy")
        )
        self._journal(kind, checkpoint, result, detail, run)
        metrics.RUNS.labels(outcome=result).inc()
        self.alerter.send(Alert(kind, checkpoint, result, detail))
        if result == "error":
            self.store.set_state(self.vmid, SentinelState.ERROR, now, detail)
            metrics.STATE.set(1)
            # The lease stays, as the Hub's `error` mark on Proxmox: no other sentinel starts over.
            try:
                self.hub.acquire_lease(self.hub.ref(), self.holder, now=now, ttl=ERROR_LEASE)
            except (ProxmoxError, SentinelError) as exc:
                log.error("the error mark could not be written on the Hub VM: %s", exc)
        else:
            self.store.set_state(self.vmid, SentinelState.WATCHING, now, detail)
            try:
                self.hub.release_lease(self.hub.ref(), self.holder)
            except (ProxmoxError, SentinelError) as exc:  # it expires on its own
                log.warning("the recovery lease could not be released now: %s", exc)
        return Outcome(result, detail, run.steps, run.id)

    def _throttled(self, now: datetime) -> Outcome | None:
        recent = self.store.automatic_runs_since(self.vmid, now - timedelta(hours=24))
        if len(recent) >= self.policy.max_runs_per_day:
            return Outcome(
                "capped", f"{len(recent)} ladder runs in the last 24 h (cap {self.policy.max_runs_per_day})"
            )
        if recent:
            last = max(recent, key=lambda r: r.started_at)
            wait = self.policy.backoff_seconds * 2 ** (len(recent) - 1)
            ended = last.ended_at or last.started_at
            if (now - ended).total_seconds() < wait:
                return Outcome(
                    "backoff", f"the last run ended at {ended.isoformat()}; next allowed after {wait:.0f} s"
                )
        return None

    # ------------------------------------------------------------------ journal

    def _journal(
        self, kind: str, checkpoint: str | None, outcome: str, detail: str, run: Run | None
    ) -> Event:
        # Strictly increasing times: the journal is read in time order everywhere (the Hub sorts its
        # imported rows by `at`), and two events can share a clock reading.
        at = self.clock()
        last = self.store.events(self.vmid, limit=1)
        if last and at <= last[-1].at:
            at = last[-1].at + timedelta(microseconds=1)
        event = Event(str(uuidlib.uuid4()), at, kind, checkpoint, outcome, detail)
        self.store.add_event(self.vmid, event, run_id=run.id if run else None)
        metrics.EVENTS.labels(kind=kind).inc()
        log.info("recovery event %s | checkpoint %s | %s | %s", kind, checkpoint or "-", outcome, detail)
        self.progress(f"  {kind}: {outcome} {('(' + detail + ')') if detail else ''}")
        self.mirror()
        return event

    def mirror(self) -> None:
        """Copy unmirrored events to the Hub VM's description; a failure waits for the next event."""
        pending = self.store.events(self.vmid, unmirrored=True)
        if not pending:
            return
        try:
            self.hub.mirror_events(self.hub.ref(), pending)
        except (ProxmoxError, SentinelError) as exc:
            log.warning("journal not mirrored on the Hub VM yet (%d events): %s", len(pending), exc)
            return
        self.store.mark_mirrored([e.id for e in pending])

    # ------------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        now = self.clock()
        row = self.store.hub(self.vmid, now)
        doc: dict[str, Any] = {
            "vmid": self.vmid,
            "sentinel": self.holder,
            "state": row.state.value,
            "since": row.since.isoformat(),
            "detail": row.detail,
            "runs": [r.to_public() for r in self.store.runs(self.vmid, limit=5)],
            "quarantined": [
                {"snapname": k, "reason": v} for k, v in sorted(self.store.quarantined(self.vmid).items())
            ],
            "events": [e.to_public() for e in self.store.events(self.vmid, limit=20)],
            "lease": None,
        }
        try:
            description, _ = self.hub.description(self.hub.ref())
            if description.lease is not None:
                doc["lease"] = {
                    "holder": description.lease.holder,
                    "expires": description.lease.expires.isoformat(),
                }
        except (ProxmoxError, SentinelError) as exc:
            doc["proxmox_error"] = str(exc)
        return doc


def _rollback(rung: int, candidate: Candidate) -> Step:
    return Step(
        rung,
        Action.ROLLBACK,
        snapname=candidate.snapname,
        checkpoint=candidate.uuid,
        vmstate=candidate.vmstate,
    )


def _http_probe(url: str, timeout: float) -> Probe:
    return readiness(url, timeout=timeout)


def _not_now(exc: ProxmoxError) -> bool:
    """A fault that says "not now" rather than "this rung failed": the run pauses at this step."""
    return exc.transient or isinstance(exc, ProxmoxQuorumError)
