"""A small, typed client over proxmoxer for the calls the Hub makes.

Idempotency: reads are always safe to repeat. ``create_snapshot`` is retried after a transport error
only once it has checked that the snapshot does not already exist (a lost answer must not become a
second snapshot task); deletes treat "does not exist" as done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import requests
from proxmoxer import ProxmoxAPI, ResourceException  # pyright: ignore[reportMissingTypeStubs]
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    wait_exponential_jitter,
)

from hubcore.proxmox.errors import (
    ProxmoxAuthError,
    ProxmoxBadRequest,
    ProxmoxConflict,
    ProxmoxError,
    ProxmoxLockedError,
    ProxmoxNotFound,
    ProxmoxPermissionError,
    ProxmoxQuorumError,
    ProxmoxServerError,
    ProxmoxTaskTimeout,
    ProxmoxTLSError,
    ProxmoxUnreachable,
)
from hubcore.proxmox.tasks import (
    CONFLICT,
    LOCKED,
    MISSING,
    QUORUM,
    TaskResult,
    task_error,
    task_succeeded,
    upid_node,
)
from hubcore.proxmox.vms import VmOperations

T = TypeVar("T")

# Task polling: ask at once (a snapshot of a small VM without RAM state can already be done), then
# once a second as PVE's own task viewer does; a task still running after a minute is a long one
# (a VM with a large RAM state), and is polled every 5 s so it costs a few requests, not hundreds.
_POLL_EVERY = 1.0
_POLL_LONG_AFTER = 60.0
_POLL_LONG = 5.0


# The task types of qemu-server's snapshot endpoints (``PVE/API2/Qemu.pm``: snapshot, delsnapshot).
SNAPSHOT_TASK_TYPES = frozenset({"qmsnapshot", "qmdelsnapshot"})


class ProxmoxObserver(Protocol):
    """Told about every request attempt and every retry, for logs and metrics.

    ``kind`` is the client method that made the call (``list_snapshots``, ``task_status``), a small
    fixed set; ``error`` is the typed error's class name. Set by whoever builds the client (the
    runtime's wiring); hubcore itself neither logs nor counts. An observer must not raise."""

    def on_request(self, kind: str, *, seconds: float, error: str | None) -> None: ...

    def on_retry(self, kind: str, *, attempt: int, delay: float, error: ProxmoxError) -> None: ...


@dataclass(frozen=True, slots=True)
class ProxmoxAccess:
    """How to reach and authenticate to the Proxmox API, and nothing about which VM.

    The sentinel (outside the Hub), the fleet code (many VMs) and hubinfra's clone set-up all build
    a client from this alone. ``verify`` is True (system trust store), a CA bundle path, or False.
    """

    url: str
    token_user: str
    token_name: str
    token_secret: str = field(repr=False)
    verify: bool | str = True
    timeout: float = 15.0
    transient_retry_seconds: float = 30.0
    locked_retry_seconds: float = 120.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    name: str
    description: str
    snaptime: int | None
    parent: str | None
    vmstate: bool
    # PVE sets snapstate ("prepare", "delete") while a snapshot task is unfinished or died half-way.
    snapstate: str | None

    @property
    def complete(self) -> bool:
        return self.snapstate is None


class ProxmoxClient(VmOperations):
    """The one Proxmox client of both halves: the runtime, the sentinel and hubinfra's clone set-up.

    Snapshot calls here take ``(node, vmid)``; VM calls (``VmOperations``, in ``vms.py``) take a
    ``VmRef``. Every call goes through ``_retrying`` and every task through ``wait_task``.
    """

    def __init__(
        self,
        *,
        base_url: str,
        token_user: str,
        token_name: str,
        token_secret: str,
        verify: bool | str = True,
        timeout: float = 15.0,
        transient_retry_seconds: float = 30.0,
        locked_retry_seconds: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        observer: ProxmoxObserver | None = None,
    ) -> None:
        host = base_url.removeprefix("https://").rstrip("/")
        self._api: Any = ProxmoxAPI(
            host,
            user=token_user,
            token_name=token_name,
            token_value=token_secret,
            verify_ssl=verify,
            timeout=timeout,
            service="PVE",
        )
        self._token_id = f"{token_user}!{token_name}"
        self._transient_budget = transient_retry_seconds
        self._locked_budget = locked_retry_seconds
        self._sleep = sleep
        self._observer = observer

    @classmethod
    def from_access(cls, access: ProxmoxAccess, *, observer: ProxmoxObserver | None = None) -> ProxmoxClient:
        return cls(
            observer=observer,
            base_url=access.url,
            token_user=access.token_user,
            token_name=access.token_name,
            token_secret=access.token_secret,
            verify=access.verify,
            timeout=access.timeout,
            transient_retry_seconds=access.transient_retry_seconds,
            locked_retry_seconds=access.locked_retry_seconds,
        )

    # ------------------------------------------------------------------ reads

    def version(self) -> dict[str, Any]:
        return self._retrying(lambda: self._api.version.get())

    def cluster_quorate(self) -> bool | None:
        """Whether the cluster has quorum, from ``GET /cluster/status`` (pve-manager
        ``PVE/API2/Cluster.pm`` ``get_status``: the ``type: cluster`` entry's ``quorate``, taken from
        pmxcfs's cluster info). None on a standalone node, which has no cluster entry and is its own
        quorum. Needs ``Sys.Audit`` on ``/``: without it PVE answers 403 (ProxmoxPermissionError)."""
        rows: list[dict[str, Any]] = self._retrying(lambda: self._api.cluster.status.get())
        for row in rows:
            if row.get("type") == "cluster":
                return bool(int(row.get("quorate") or 0))
        return None

    def list_snapshots(self, node: str, vmid: int) -> list[Snapshot]:
        """The VM's snapshots, without PVE's ``current`` pseudo-entry."""
        rows: list[dict[str, Any]] = self._retrying(lambda: self._api.nodes(node).qemu(vmid).snapshot.get())
        return [
            Snapshot(
                name=str(row["name"]),
                description=str(row.get("description") or ""),
                snaptime=int(row["snaptime"]) if row.get("snaptime") else None,
                parent=row.get("parent"),
                vmstate=bool(row.get("vmstate")),
                snapstate=row.get("snapstate"),
            )
            for row in rows
            if row.get("name") != "current"
        ]

    def get_snapshot(self, node: str, vmid: int, name: str) -> Snapshot | None:
        """One snapshot by name (its config section), or None if the VM has no such snapshot.

        Cheaper than listing every snapshot: the answer does not grow with the VM's history."""

        def read() -> Snapshot | None:
            try:
                cfg: dict[str, Any] = _translated(
                    lambda: self._api.nodes(node).qemu(vmid).snapshot(name).config.get()
                )
            except ProxmoxNotFound:
                return None
            return Snapshot(
                name=name,
                description=str(cfg.get("description") or ""),
                snaptime=int(cfg["snaptime"]) if cfg.get("snaptime") else None,
                parent=cfg.get("parent"),
                vmstate=bool(cfg.get("vmstate")),
                snapstate=cfg.get("snapstate"),
            )

        return self._retrying(read)

    def running_snapshot_task(self, node: str, vmid: int) -> str | None:
        """The UPID of a snapshot or snapshot-delete task still running on the VM, if any.

        How a process that lost the UPID (it died, or the answer never came) finds out whether Proxmox
        is still working on the VM's snapshots: the node's active tasks for that VM (pve-manager
        ``PVE/API2/Tasks.pm``, ``source=active``)."""
        for task in self.node_tasks(node, vmid=vmid, running=True):
            if task.get("type") in SNAPSHOT_TASK_TYPES and task.get("upid"):
                return str(task["upid"])
        return None

    def task_status(self, upid: str) -> dict[str, Any]:
        node = upid_node(upid)
        return self._retrying(lambda: self._api.nodes(node).tasks(upid).status.get())

    # ----------------------------------------------------------------- writes

    def create_snapshot(
        self,
        node: str,
        vmid: int,
        *,
        name: str,
        description: str,
        check_existing: bool = False,
        vmstate: bool = False,
    ) -> str | None:
        """Start a snapshot task; returns its UPID, or None if the snapshot turned out to exist already
        (a previous attempt's answer was lost in transit)."""
        attempts = 0

        def post() -> str | None:
            nonlocal attempts
            attempts += 1
            if (check_existing or attempts > 1) and any(
                s.name == name for s in self.list_snapshots(node, vmid)
            ):
                return None
            # vmstate=1 also saves the RAM (qemu-server PVE/API2/Qemu.pm snapshot): a rollback resumes it.
            params: dict[str, str | int] = {"snapname": name, "description": description}
            if vmstate:
                params["vmstate"] = 1
            return str(self._api.nodes(node).qemu(vmid).snapshot.post(**params))

        return self._retrying(post)

    def take_snapshot(
        self,
        node: str,
        vmid: int,
        *,
        name: str,
        description: str,
        timeout: float,
        vmstate: bool = False,
        on_started: Callable[[str], None] = lambda _upid: None,
    ) -> TaskResult | None:
        """Create the snapshot and wait for its task. Returns None when it already existed, complete.

        A task that failed only because another task (a backup, a clone) held the VM's config lock
        did nothing, so it is asked for again, with back-off, within the lock budget. When the
        snapshot turns out to exist already (an earlier request got through although its answer was
        lost), its task may still be running: that task is found and waited for, so the caller never
        verifies a snapshot still in ``prepare``.
        """

        tries = 0

        def attempt() -> TaskResult | None:
            nonlocal tries
            tries += 1
            upid = self.create_snapshot(
                node, vmid, name=name, description=description, check_existing=tries > 1, vmstate=vmstate
            )
            if upid is None:
                upid = self.running_snapshot_task(node, vmid)
                if upid is None:
                    return None
            on_started(upid)
            return self.wait_task(upid, timeout=timeout)

        # Only the lock is retried here: transport faults are retried inside each request already.
        return self._retrying(attempt, only=ProxmoxLockedError)

    def delete_snapshot(self, node: str, vmid: int, *, name: str, force: bool = False) -> str | None:
        """Start a snapshot-delete task; returns its UPID, or None when the snapshot is already gone."""

        def delete() -> str | None:
            try:
                params = {"force": 1} if force else {}
                return str(
                    _translated(lambda: self._api.nodes(node).qemu(vmid).snapshot(name).delete(**params))
                )
            except ProxmoxNotFound:
                return None

        return self._retrying(delete)

    def set_snapshot_description(self, node: str, vmid: int, *, name: str, description: str) -> None:
        """Rewrite a snapshot's description (no task: PVE applies it synchronously)."""
        self._retrying(
            lambda: self._api.nodes(node).qemu(vmid).snapshot(name).config.put(description=description)
        )

    def remove_snapshot(self, node: str, vmid: int, *, name: str, force: bool, timeout: float) -> bool:
        """Delete the snapshot and wait for the task. Idempotent: False when it was already gone
        (PVE reports that inside the task, as ``snapshot 'x' does not exist``)."""
        upid = self.delete_snapshot(node, vmid, name=name, force=force)
        if upid is None:
            return False
        try:
            self.wait_task(upid, timeout=timeout)
        except ProxmoxNotFound:
            return False
        return True

    # ------------------------------------------------------------------ tasks

    def wait_task(self, upid: str, *, timeout: float) -> TaskResult:
        """Poll the task until it stops; raise ProxmoxTaskFailed unless it ended OK or with warnings."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            status = self.task_status(upid)
            if status.get("status") == "stopped":
                exitstatus = str(status.get("exitstatus") or "unknown")
                if task_succeeded(exitstatus):
                    return TaskResult(upid=upid, exitstatus=exitstatus)
                raise task_error(upid, exitstatus)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProxmoxTaskTimeout(f"task {upid} still running after {timeout:.0f}s", upid=upid)
            delay = _POLL_LONG if time.monotonic() - started > _POLL_LONG_AFTER else _POLL_EVERY
            self._sleep(min(delay, remaining))

    # --------------------------------------------------------------- plumbing

    def _retrying(self, call: Callable[[], T], *, only: type[ProxmoxError] | None = None) -> T:
        """Run ``call`` with typed errors, retrying transient ones with jittered exponential back-off.

        A held config lock gets its own, longer budget: a backup can hold it for minutes, and waiting
        it out is what an operator would do by hand.
        """

        def out_of_budget(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            budget = self._locked_budget if isinstance(exc, ProxmoxLockedError) else self._transient_budget
            return (state.seconds_since_start or 0.0) >= budget

        observer = self._observer
        kind = _kind(call)

        def attempt() -> T:
            if observer is None:
                return _translated(call)
            started = time.monotonic()
            try:
                result = _translated(call)
            except ProxmoxError as exc:
                observer.on_request(kind, seconds=time.monotonic() - started, error=type(exc).__name__)
                raise
            observer.on_request(kind, seconds=time.monotonic() - started, error=None)
            return result

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if observer is not None and isinstance(exc, ProxmoxError):
                delay = state.next_action.sleep if state.next_action else 0.0
                observer.on_retry(kind, attempt=state.attempt_number, delay=delay, error=exc)

        retrying = Retrying(
            retry=retry_if_exception(
                lambda e: (
                    isinstance(e, ProxmoxError) and e.transient and (only is None or isinstance(e, only))
                )
            ),
            stop=out_of_budget,
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(attempt)


def _kind(call: Callable[..., Any]) -> str:
    """The client method a call was made in: ``ProxmoxClient.list_snapshots.<locals>.<lambda>`` is
    ``list_snapshots``; a bounded label, unlike the path (which carries node, vmid and UPID)."""
    qualname = getattr(call, "__qualname__", "") or "call"
    return qualname.split(".<locals>", 1)[0].rsplit(".", 1)[-1]


def _translated(call: Callable[[], T]) -> T:
    try:
        return call()
    except ResourceException as exc:
        raise _http_error(exc) from None
    except requests.exceptions.SSLError as exc:
        raise ProxmoxTLSError(
            f"TLS verification of the Proxmox API at {_where(exc)} failed: {_tls_cause(exc)}"
        ) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise ProxmoxUnreachable(f"Proxmox API at {_where(exc)} unreachable: {_network_cause(exc)}") from None


def _http_error(exc: ResourceException) -> ProxmoxError:
    status = int(cast(int, exc.status_code))
    errors = cast(object, exc.errors)  # pyright: ignore[reportUnknownMemberType]
    text = f"{exc.content or ''} {errors or ''}".strip()
    message = f"Proxmox API answered {status}: {text}"
    if status == 401:
        return ProxmoxAuthError(f"Proxmox refused the API token (401): {text}", status=status)
    if status == 403:
        return ProxmoxPermissionError(f"Proxmox denied permission (403): {text}", status=status)
    if status == 400:
        return ProxmoxBadRequest(message, status=status)
    if QUORUM.search(text):
        return ProxmoxQuorumError(f"the Proxmox cluster has lost quorum: {text}", status=status)
    if LOCKED.search(text):
        return ProxmoxLockedError(f"the VM is locked by another task: {text}", status=status)
    if CONFLICT.search(text):
        return ProxmoxConflict(f"Proxmox refused in the VM's current state: {text}", status=status)
    if status == 404 or MISSING.search(text):
        return ProxmoxNotFound(message, status=status)
    if status == 595:
        return ProxmoxUnreachable(f"Proxmox node unreachable (595): {text}", status=status)
    if status >= 500:
        return ProxmoxServerError(message, status=status)
    return ProxmoxError(message, status=status)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (requests -> urllib3's MaxRetryError -> its reason -> the OSError),
    outermost first: urllib3 nests each layer's text in the next, so the root says it shortest."""
    found: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        nested: list[object] = [
            getattr(current, "reason", None),
            current.__cause__,
            current.__context__,
            *current.args,
        ]
        todo += [n for n in nested if isinstance(n, BaseException)]
    return found


def _where(exc: requests.exceptions.RequestException) -> str:
    """host:port of the request that failed."""
    from urllib.parse import urlsplit

    url = getattr(exc.request, "url", None) if exc.request is not None else None
    if isinstance(url, str):
        parts = urlsplit(url)
        if parts.hostname:
            return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    for layer in _chain(exc):
        pool = getattr(layer, "pool", None)
        if pool is not None and getattr(pool, "host", None):
            return f"{pool.host}:{pool.port}"
    return "(unknown host)"


def _network_cause(exc: BaseException) -> str:
    """One short phrase for why a connection failed: refused, timed out, name does not resolve..."""
    import socket

    chain = _chain(exc)
    text = " ".join(str(layer) for layer in chain).lower()
    if any(isinstance(layer, socket.gaierror) for layer in chain) or any(
        marker in text
        for marker in (
            "name or service not known",
            "failed to resolve",
            "nodename nor servname",
            "name resolution",
        )
    ):
        return "name does not resolve"
    if any(isinstance(layer, ConnectionRefusedError) for layer in chain) or "connection refused" in text:
        return "connection refused"
    if any(
        isinstance(layer, TimeoutError | socket.timeout | requests.exceptions.Timeout) for layer in chain
    ) or ("timed out" in text):
        return "timed out"
    if any(isinstance(layer, ConnectionResetError) for layer in chain) or "connection reset" in text:
        return "connection reset by peer"
    if "no route to host" in text:
        return "no route to host"
    if "network is unreachable" in text:
        return "network is unreachable"
    root = chain[-1]
    return _first_line(root)[:120]


def _tls_cause(exc: BaseException) -> str:
    """The certificate check's own words (``certificate verify failed: self-signed ...``)."""
    import ssl

    for layer in reversed(_chain(exc)):
        if isinstance(layer, ssl.SSLCertVerificationError):
            return (
                f"certificate verify failed: {layer.verify_message}" if layer.verify_message else str(layer)
            )
        if isinstance(layer, ssl.SSLError) and layer.reason:
            return str(layer.reason).lower().replace("_", " ")
    return _first_line(exc)[:160]


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]
