"""Job kinds, registered by the domain that owns them.

A kind is a name, a typed parameter model and a handler. The domain declares its kinds in its own
``jobs.py`` (``KINDS = [JobKind(...), ...]``); ``runtime.domains`` collects them into one
``JobKinds`` that the queue is built with. Parameters are validated by the model when a job is
submitted (bad parameters never reach the database), stored as the model's JSON, and parsed again
by the model when the job runs, so a handler always receives a typed object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from runtime.errors import UsageError
from runtime.wiring import Services

P = TypeVar("P", bound=BaseModel)
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler gets besides its parameters: the runtime's services, who asked, and a way to
    report progress onto the job's row."""

    services: Services
    actor: str
    progress: Progress = field(default=_quiet)


@dataclass(frozen=True, slots=True)
class JobKind(Generic[P]):
    name: str
    params: type[P]
    handler: Callable[[JobContext, P], dict[str, Any]]
    summary: str = ""
    # How long one job of this kind may run before its worker thread counts as hung (health); None:
    # the longest a VM operation can take under the configured bounds.
    timeout_seconds: float | None = None

    def parse(self, raw: dict[str, Any]) -> P:
        """The typed parameters, or a UsageError naming the first bad field."""
        try:
            return self.params.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(part) for part in err["loc"]) or "params"
            raise UsageError(f"{self.name}: {where}: {err['msg']}") from None

    def run(self, context: JobContext, raw: dict[str, Any]) -> dict[str, Any]:
        return self.handler(context, self.parse(raw))


class JobKinds:
    """Every registered kind, by name. Built once (``runtime.domains.job_kinds()``), passed explicitly."""

    def __init__(self, kinds: Iterable[JobKind[Any]]) -> None:
        self._kinds: dict[str, JobKind[Any]] = {}
        for kind in kinds:
            if kind.name in self._kinds:
                raise ValueError(f"job kind {kind.name!r} registered twice")
            self._kinds[kind.name] = kind

    def get(self, name: str) -> JobKind[Any]:
        try:
            return self._kinds[name]
        except KeyError:
            raise UsageError(f"unknown job kind {name!r}") from None

    def names(self) -> list[str]:
        return sorted(self._kinds)
