"""The service's logs: one line per event, JSON off a terminal, readable text on one.

Configured once by the long-running processes (``hubctl serve``; ``hubctl worker`` later), never by
a library module. A log shipper (journald, Docker's json-file, Loki) reads JSON lines without a
parser per message shape, so off a terminal every record is one JSON object; at a terminal a person
reads it, so it is ``time level logger: message key=value``.

Nothing secret reaches a line: every message and every extra field goes through
``runtime.audit.scrub`` (the audit trail's own redaction), and the access log never looks at the
``Authorization`` header.

Only the Hub's own loggers (``hub``, ``runtime``, ``hubcore``) follow ``HUB_LOG_LEVEL``; libraries
(uvicorn, Alembic, urllib3, Dramatiq) say only warnings and errors, so ``info`` stays one line per
thing the Hub did.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import json
import logging
import logging.handlers
import queue
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

from runtime.audit import scrub

OWN_LOGGERS = ("hub", "runtime", "hubcore")
# The attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STANDARD = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_HANDLER_NAME = "hub-log"
QUEUE_SIZE = 10_000
# How long ending the process waits for room in a full queue to say "stop" to the writer: stderr is
# being drained (the lines are written) or it is stuck (they are dropped, as while running).
SHUTDOWN_WRITE_SECONDS = 10.0
BATCH_SECONDS = 0.05  # how long the writer lets a burst gather: the most a line waits to be written

access_log = logging.getLogger("hub.access")


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record, scrubbed."""
    extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
    return scrub(extra)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
            **fields(record),
        }
        if record.exc_text:
            line["exc"] = scrub(record.exc_text)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extra = " ".join(f"{k}={v}" for k, v in fields(record).items())
        text = f"{at} {record.levelname.lower():<7} {record.name}: {scrub(record.getMessage())}"
        if extra:
            text += f"  {extra}"
        if record.exc_text:
            text += "\n" + scrub(record.exc_text)
        return text


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread; when the queue is full (stderr not drained), drops them
    and says how many once there is room again, instead of stalling a request or a job on a write."""

    def __init__(self, records: queue.Queue[logging.LogRecord | None]) -> None:
        super().__init__(records)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The message is rendered here (its arguments may change later); the traceback is kept apart
        # from it, so a JSON line has it as its own field.
        ready = copy.copy(record)
        ready.msg = record.getMessage()
        ready.args = None
        if record.exc_info and record.exc_info[0] is not None:
            ready.exc_text = logging.Formatter().formatException(record.exc_info)
        ready.exc_info = None
        return ready

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            if self.dropped:
                note = logging.LogRecord("hub.logs", logging.WARNING, __file__, 0, "", None, None)
                note.msg = f"{self.dropped} log line(s) dropped: stderr was not read fast enough"
                self.queue.put_nowait(note)  # pyright: ignore[reportUnknownMemberType]
                self.dropped = 0
            self.queue.put_nowait(record)  # pyright: ignore[reportUnknownMemberType]
        except queue.Full:
            self.dropped += 1


class _Writer:
    """The writer thread: formats queued records and writes them, a batch at a time.

    It sleeps on the queue until a record comes (no wake-ups while the process is quiet), then lets
    a burst gather for ``BATCH_SECONDS`` and writes all of it with one ``write`` and one flush. The
    standard ``QueueListener`` woke for every record and wrote each with its own flush: under load
    every request's access line cost a thread wake-up and a GIL hand-over each way, ~0.3 ms of the
    server's CPU per request (measured with benchmarks/api_latency.py's closed loop: 1.02-1.15 ms
    per request against 0.84 batched and 0.78 with no access lines, same build, same minute).

    Stopping waits up to ``SHUTDOWN_WRITE_SECONDS`` for room for its stop mark, and for the writer;
    the standard listener's ``put_nowait`` of its mark raised ``queue.Full`` out of ``shutdown`` (at
    exit: a traceback, and the queued lines never written) whenever a burst had filled the queue."""

    def __init__(
        self, records: queue.Queue[logging.LogRecord | None], writer: logging.StreamHandler[TextIO]
    ) -> None:
        self._records = records
        self._writer = writer
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._records.get()  # asleep until a line comes
            self._stopping.wait(BATCH_SECONDS)  # let a burst gather (at once when stopping)
            batch = [first]
            with contextlib.suppress(queue.Empty):
                while len(batch) < QUEUE_SIZE:
                    batch.append(self._records.get_nowait())
            lines: list[str] = []
            stop = False
            for record in batch:
                if record is None:  # the stop mark: what came before it is written, nothing after
                    stop = True
                    break
                try:
                    lines.append(self._writer.format(record) + self._writer.terminator)
                except Exception:  # one bad record must not take the others down
                    self._writer.handleError(record)
            if lines:
                try:
                    self._writer.stream.write("".join(lines))
                    self._writer.flush()
                except Exception:  # stderr closed or broken: these lines are lost, later ones may not be
                    self._writer.handleError(logging.makeLogRecord({"msg": f"{len(lines)} log line(s) lost"}))
            if stop:
                return

    def stop(self) -> None:
        """Raises ``queue.Full`` when no room came for the stop mark (stderr stuck)."""
        self._stopping.set()
        self._records.put(None, timeout=SHUTDOWN_WRITE_SECONDS)
        self._thread.join(timeout=SHUTDOWN_WRITE_SECONDS)  # a stuck stderr: given up (a daemon thread)


_listener: _Writer | None = None


def configure(level: str, *, stream: TextIO | None = None, as_json: bool | None = None) -> bool:
    """Send every record to ``stream`` (stderr), one line each; returns whether lines are JSON.

    Lines are written by one thread from a bounded queue (``QUEUE_SIZE``): a slow or stuck reader of
    stderr costs dropped lines (counted, and said), never a stalled request or job. Idempotent:
    configuring again replaces the previous set-up. ``shutdown`` writes what is still queued."""
    global _listener
    shutdown()
    out = stream if stream is not None else sys.stderr
    json_lines = not _is_terminal(out) if as_json is None else as_json
    writer = logging.StreamHandler(out)
    writer.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    records: queue.Queue[logging.LogRecord | None] = queue.Queue(maxsize=QUEUE_SIZE)
    handler = _DroppingQueueHandler(records)
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())
    _listener = _Writer(records, writer)
    _listener.start()
    # Also on an early exit (the database never came, the lease is taken): queued lines still go out.
    atexit.unregister(shutdown)
    atexit.register(shutdown)
    return json_lines


def shutdown() -> None:
    """Write every queued line and stop the writer thread (the process is ending)."""
    global _listener
    if _listener is not None:
        listener, _listener = _listener, None
        # stderr stuck for SHUTDOWN_WRITE_SECONDS: what is queued is lost (the thread is a daemon).
        with contextlib.suppress(queue.Full):
            listener.stop()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ACTOR_KEY = "hub_actor"


class AccessLog:
    """ASGI middleware: one ``hub.access`` line per HTTP request once its response has started
    (method, path without the query, status, duration, and the actor when the request was
    authenticated). A request that dies before answering is logged with status 500.

    The actor is what authentication put in the request's state (``note_actor``); headers are
    never read here, so a token cannot reach the log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        state: dict[str, Any] = scope.setdefault("state", {})

        async def noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            extra: dict[str, Any] = {
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            }
            actor = state.get(ACTOR_KEY)
            if actor is not None:
                extra["actor"] = actor
            access_log.info("%s %s %d", extra["method"], extra["path"], status, extra=extra)


def note_actor(state: Any, actor: str) -> None:
    """Record the authenticated actor on a request's state (Starlette's ``request.state`` keeps its
    attributes in ``scope["state"]``, where the access log reads it)."""
    setattr(state, ACTOR_KEY, actor)
