"""Run the real `__main__.py` under Pulumi mocks with a stack's own config file.

Each run gets a fresh event loop and fresh runtime settings (`reset_options` + `set_mocks`), so
several programs can be evaluated in one pytest process without leaking resources or the root stack
between them.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import logging
import runpy
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop  # pyright: ignore[reportPrivateUsage]

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "__main__.py"
# What an operator sets with `pulumi config set --secret`; never committed to the stack files.
API_TOKEN_SEED = "test-seed-0123456789abcdefghijklmnopqrstuvwxyz"
OPERATOR_SECRETS = {
    "hub:proxmoxApiToken": "root@pam!pulumi=00000000-0000-0000-0000-000000000000",
    "hub:apiTokenSeed": API_TOKEN_SEED,
}
TOKEN_SECRET = "11111111-2222-3333-4444-555555555555"
# The main Hub's token (pool hub-dev / hub-prod) gets TOKEN_SECRET; every other token its own secret,
# so a test can tell whose secret a file holds.
MAIN_TOKENS = frozenset({"hub-dev", "hub-prod"})


def token_secret_for(token_name: str) -> str:
    if token_name in MAIN_TOKENS:
        return TOKEN_SECRET
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hub-test-token/{token_name}"))


_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
DYNAMIC = "pulumi-python:dynamic:Resource"


@dataclass
class Resource:
    type: str
    name: str
    inputs: dict[str, Any]
    secret_inputs: set[str] = field(default_factory=set[str])
    protect: bool = False
    retain_on_delete: bool = False
    parent: str = ""  # the parent's URN
    dependencies: list[str] = field(default_factory=list[str])  # URNs from depends_on and inputs
    replacement_trigger: Any = None  # ResourceOptions.replacement_trigger, as the engine receives it
    ignore_changes: list[str] = field(default_factory=list[str])
    delete_before_replace: bool = False
    replace_on_changes: list[str] = field(default_factory=list[str])
    aliases: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])  # as the engine receives them


def _unwrap(value: Any) -> tuple[Any, bool]:
    """Strip Pulumi's secret envelopes; report whether any were found."""
    if isinstance(value, dict):
        if value.get("4dabf18193072939515e22adb298388d") == _SECRET_SIG:
            inner, _ = _unwrap(value["value"])
            return inner, True
        out: dict[str, Any] = {}
        secret = False
        for k, v in value.items():
            out[k], s = _unwrap(v)
            secret = secret or s
        return out, secret
    if isinstance(value, list):
        pairs = [_unwrap(v) for v in value]
        return [p[0] for p in pairs], any(p[1] for p in pairs)
    return value, False


@dataclass
class Run:
    resources: list[Resource]
    outputs: dict[str, Any]
    errors: list[str]
    exit_code: int | None
    secret_outputs: set[str] = field(default_factory=set[str])
    stack: str = ""

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def dynamic(self, kind: str) -> list[Resource]:
        """The dynamic resources whose name ends with `-<kind>` (they all share one type token)."""
        return [r for r in self.of_type(DYNAMIC) if r.name.endswith(f"-{kind}")]

    def one(self, type_: str, name_part: str = "") -> Resource:
        found = [r for r in self.of_type(type_) if name_part in r.name]
        assert len(found) == 1, f"expected one {type_} matching {name_part!r}, got {[r.name for r in found]}"
        return found[0]


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Resource] = []
        self.options: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.aliases: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs: dict[str, Any] = {}
        secret_inputs: set[str] = set()
        for key, value in args.inputs.items():
            inputs[key], secret = _unwrap(value)
            if secret:
                secret_inputs.add(key)
        self.resources.append(Resource(args.typ, args.name, inputs, secret_inputs))
        outputs = dict(inputs)
        if args.typ == "proxmoxve:index/vmLegacy:VmLegacy":
            outputs["ipv4Addresses"] = [["127.0.0.1"], ["10.20.0.10"]]
        if args.typ == "proxmoxve:user/token:Token":
            outputs["value"] = token_secret_for(str(inputs["tokenName"]))
            return f"{inputs['userId']}!{inputs['tokenName']}", outputs
        if args.typ == "proxmoxve:index/fileLegacy:FileLegacy":
            raw = inputs.get("sourceRaw", {})
            return f"{inputs.get('datastoreId')}:snippets/{raw.get('fileName')}", outputs
        return f"{args.name}-id", outputs

    # What the provider's version data source answers (tests may change it).
    pve_version = "9.0.3"

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "proxmoxve:index/getVersion:getVersion":
            release = ".".join(self.pve_version.split(".")[:2])
            return {
                "id": "version",
                "version": self.pve_version,
                "release": release,
                "repositoryId": "x",
            }, []
        return {}, []


class RecordingMonitor(MockMonitor):
    """Also records the resource options the mocks cannot see (protect, retainOnDelete, parent)."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recording = mocks
        # Pulumi's MockMonitor gives each executor thread its own event loop (sync_await.py
        # `_ensure_event_loop`) and never closes it; the harness closes them after the run, so they are
        # not finalised later, at a random point of another test, after their own sockets.
        self.thread_loops: set[asyncio.AbstractEventLoop] = set()

    def _remember_loop(self) -> None:
        self.thread_loops.add(_ensure_event_loop())

    def Invoke(self, request: Any) -> Any:
        self._remember_loop()
        return super().Invoke(request)

    def ReadResource(self, request: Any) -> Any:
        self._remember_loop()
        return super().ReadResource(request)

    def RegisterResource(self, request: Any) -> Any:
        self._remember_loop()
        # Registrations run concurrently on executor threads: key by (type, name), not by order.
        self.recording.options[(request.type, request.name)] = (
            bool(request.protect),
            bool(request.retainOnDelete),
            request.parent,
            list(request.dependencies),
            json_format.MessageToDict(request.replacement_trigger)
            if request.HasField("replacement_trigger")
            else None,
            list(request.ignoreChanges),
            bool(request.deleteBeforeReplace),
            list(request.replaceOnChanges),
        )
        self.recording.aliases[(request.type, request.name)] = [
            json_format.MessageToDict(alias) for alias in request.aliases
        ] + [{"urn": urn} for urn in request.aliasURNs]
        return super().RegisterResource(request)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def stack_config(stack: str) -> dict[str, Any]:
    document = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())
    return dict(document["config"])


def run_program(
    stack: str,
    *,
    edit: Callable[[dict[str, Any]], None] | None = None,
    secrets: Mapping[str, str] = OPERATOR_SECRETS,
    pve_version: str = RecordingMocks.pve_version,
    restore_gc: bool = True,
) -> Run:
    """Evaluate __main__.py for `stack`; `edit` may change the parsed stack config first.

    The program turns the cyclic garbage collector off for its one evaluation (hubinfra/evaluation.py);
    this process goes on with other tests and runs, so the collector is put back afterwards, unless
    `restore_gc` is false (benchmarks/infra_eval.py: a one-evaluation process, as `pulumi up` is,
    where the first young collection after putting it back would sweep every object the evaluation
    made, a cost the real program never pays before it exits)."""
    config = copy.deepcopy(stack_config(stack))
    if edit is not None:
        edit(config)
    wire = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    wire.update(secrets)

    mocks = RecordingMocks()
    mocks.pve_version = pve_version
    logger = logging.getLogger(f"hub-infra-test-{stack}")
    logger.propagate = False
    capture = _Capture()
    logger.handlers = [capture]

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    runtime_settings.reset_options(project="hub", stack=stack)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="hub", stack=stack, preview=False, logger=logger, monitor=monitor)
    pulumi.runtime.set_all_config(wire, secret_keys=list(secrets))

    exit_code: int | None = None
    outputs: dict[str, Any] = {}
    thresholds, collecting = gc.get_threshold(), gc.isenabled()
    secret_outputs: set[str] = set()
    try:
        loop.run_until_complete(run_pulumi_func(lambda: runpy.run_path(str(MAIN), run_name="__main__")))
        root = runtime_settings.get_root_resource()
        exported: dict[str, Any] = dict(getattr(root, "outputs", {}) or {})
        for key, value in exported.items():
            out = pulumi.Output.from_input(value)
            outputs[key] = loop.run_until_complete(out.future())
            if loop.run_until_complete(out.is_secret()):
                secret_outputs.add(key)
    except SystemExit as exc:
        exit_code = int(exc.code or 0)
    finally:
        loop.close()
        for thread_loop in monitor.thread_loops:
            if not thread_loop.is_running():
                thread_loop.close()
        asyncio.set_event_loop(None)
        runtime_settings.reset_options()
        if restore_gc:
            gc.unfreeze()
            gc.set_threshold(*thresholds)
            if collecting:
                gc.enable()
    for res in mocks.resources:
        (
            res.protect,
            res.retain_on_delete,
            res.parent,
            res.dependencies,
            res.replacement_trigger,
            res.ignore_changes,
            res.delete_before_replace,
            res.replace_on_changes,
        ) = mocks.options[(res.type, res.name)]
        res.aliases = mocks.aliases.get((res.type, res.name), [])
    return Run(mocks.resources, outputs, capture.messages, exit_code, secret_outputs, stack)
