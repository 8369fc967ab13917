"""The runtime's one settings object.

Read once at the edge (CLI start-up) from ``HUB_*`` environment variables and an optional YAML/JSON
file (``HUB_CONFIG_FILE``, written by cloud-init), then passed explicitly to every service and loop.
The environment wins over the file, so an operator can override one value without editing it.
"""

from __future__ import annotations

import json
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Self, cast
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import (
    SettingsError as PydanticSettingsError,
)

from hubcore.contract import DEFAULT_HUB_TYPE, Environment, HubType, check_hub_type, validate_schedule
from runtime.errors import SettingsError

if TYPE_CHECKING:
    from hubcore.proxmox import ProxmoxAccess

ENV_PREFIX = "HUB_"

# Durations are finite and at most a week: `inf` or `1e308` would pass a plain float and then turn a
# bounded wait into a hang (or overflow a deadline computation).
WEEK = 7 * 24 * 3600.0
Seconds = Annotated[float, Field(ge=0, le=WEEK, allow_inf_nan=False)]
PositiveSeconds = Annotated[float, Field(gt=0, le=WEEK, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=100_000)]
Percent = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
Streak = Annotated[int, Field(ge=1, le=1000)]

LABEL = re.compile(r"[a-z][a-z0-9-]{0,31}")


class RetentionRule(BaseModel):
    """One label's retention (``HUB_RETENTION``): PBS's keep-* counts plus keep-within-days."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_last: Count = 0
    keep_hourly: Count = 0
    keep_daily: Count = 0
    keep_weekly: Count = 0
    keep_monthly: Count = 0
    keep_within_days: Count = 0


# user@realm!tokenid=secret, as pveum prints it. Strict on purpose: a control character (a `\r` from
# a CRLF env file) or a space would otherwise pass here and surface later inside an HTTP library's
# error message, secret included.
_TOKEN = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9._-]+![A-Za-z][A-Za-z0-9._-]*=[A-Za-z0-9._~+/-]+")


class LogLevel(StrEnum):
    """How much the service logs (``runtime.logs``); the names of Python's logging levels."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def default_data_dir() -> Path:
    """Where the embedded default database lives: ``$XDG_DATA_HOME/hub``, else ``~/.local/share/hub``
    (root's too). Created when the database is first opened (runtime.db.session)."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "hub"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    environment: Environment = Environment.DEVELOPMENT
    # Not ./hub.db: a database must not depend on the directory a command happens to run in.
    database_url: str = Field(default_factory=lambda: f"sqlite:///{default_data_dir() / 'hub.db'}")
    redis_url: str | None = None
    proxmox_url: str | None = None
    proxmox_api_token: SecretStr | None = None
    proxmox_ca_bundle: Path | None = None
    proxmox_insecure: bool = False
    node: str | None = None
    vmid: int | None = Field(default=None, ge=100, le=999_999_999)
    # The Proxmox pool the Hub's machines live in (hubinfra makes one per hub). A VM is one of the
    # Hub's machines only when it carries the ``hub-machine`` tag AND sits in this pool; unset, the
    # Hub owns no machine VM (only its own, HUB_VMID) and fleet operations select nothing else.
    # Pool ids as pve-access-control PVE/AccessControl.pm (verify_poolname) accepts them.
    pool: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    config_file: Path | None = None
    # Where cross-process file locks live when Redis is not configured (default: the temp dir).
    lock_dir: Path | None = None

    # Checkpoint policy. A 5-field cron expression evaluated in UTC, or "manual". Unset: production
    # checkpoints daily at 00:00 UTC, every other environment only on demand.
    checkpoint_schedule: str | None = None
    # Retention, with Proxmox Backup Server's prune semantics (see runtime/checkpoints/retention.py).
    keep_last: Count = 3
    keep_hourly: Count = 0
    keep_daily: Count = 14
    keep_weekly: Count = 8
    keep_monthly: Count = 6
    # Per-label retention, as JSON: {"manual": {"keep_last": 5}, "daily": {"keep_daily": 7}}. A label
    # not named keeps its default (see CheckpointService.policy).
    retention: dict[str, RetentionRule] = Field(default_factory=lambda: dict[str, RetentionRule]())
    # Scheduled checkpoints save the VM's RAM too (PVE's vmstate; cv4pve-autosnap's --state).
    checkpoint_vmstate: bool = False

    # How long a second checkpoint request waits for the VM's checkpoint lock before it is refused.
    lock_wait_seconds: Seconds = 30.0
    # Upper bound on one Proxmox task (snapshot, delete), and on retrying a VM config lock held by
    # another task (a backup can hold it for a long time; we give up and say so).
    task_timeout_seconds: PositiveSeconds = 600.0
    locked_retry_seconds: Seconds = 120.0
    api_timeout_seconds: PositiveSeconds = 15.0
    # Transient faults (connection errors, 5xx) are retried this long before the operation fails.
    transient_retry_seconds: Seconds = 30.0

    # Identity: the SMBIOS uuid of the VM this settings file was written for (hubinfra sets it). A
    # snapshot clone inherits the source's file but gets a new uuid, so a mismatch means "these
    # settings are not mine" and the runtime refuses to touch Proxmox (see runtime/identity.py).
    vm_uuid: str | None = None
    product_uuid_file: Path = Path("/sys/class/dmi/id/product_uuid")
    # Experimental hubs: the VM and checkpoint they were cloned from (informational; never acted on).
    source_vmid: int | None = Field(default=None, ge=100, le=999_999_999)
    source_checkpoint: str | None = None

    # The service: how long start-up waits for the database, and how often the health loop runs.
    db_wait_seconds: Seconds = 60.0
    health_interval_seconds: PositiveSeconds = 30.0
    # Hysteresis (runtime/health/tracker.py): consecutive evaluations to settle on critical, and on
    # healthy again. The sentinel acts on the settled verdict only.
    health_critical_after: Streak = 3
    health_healthy_after: Streak = 3
    # Health history (hub_health_history): every evaluation, pruned after this many days.
    health_history_days: int = Field(default=7, ge=1, le=366)
    # The scheduler's heartbeat interval; a beat older than three intervals means a dead scheduler.
    health_heartbeat_seconds: PositiveSeconds = 10.0
    # Disk headroom inside the VM: the filesystem of this path (unset: the SQLite database's folder,
    # else the root filesystem). Used space in percent; also applied to the VM's disk as Proxmox
    # reports it, when it reports one.
    health_disk_path: Path | None = None
    health_disk_degraded_percent: Percent = 85.0
    health_disk_critical_percent: Percent = 95.0
    # Memory inside the VM (/proc/meminfo: 100 - MemAvailable/MemTotal), in percent.
    health_memory_degraded_percent: Percent = 90.0
    health_memory_critical_percent: Percent = 98.0
    # The VM's memory as Proxmox reports it (status/current mem/maxmem) counts the guest's page cache,
    # so it is only ever a warning.
    health_vm_memory_degraded_percent: Percent = 95.0
    # Recent job failure rate: over this window, with at least this many finished jobs.
    health_failure_window_seconds: PositiveSeconds = 3600.0
    health_failure_min_jobs: int = Field(default=5, ge=1, le=100_000)
    health_failure_degraded_percent: Percent = 50.0
    health_failure_critical_percent: Percent = 100.0
    # A completed checkpoint of the Hub is blessed once the Hub stayed healthy this long after it.
    bless_window_seconds: PositiveSeconds = 3600.0
    # How often the service reconciles on its own (and right after a job ends abnormally), so rows a
    # killed worker left 'creating' are settled without waiting for a restart.
    reconcile_interval_seconds: PositiveSeconds = 300.0
    # Job worker threads per process (``hubctl serve`` and ``hubctl worker``). 0 on ``serve``: API
    # only, jobs run by ``hubctl worker`` processes (needs Redis, the broker they share).
    worker_threads: int = Field(default=2, ge=0, le=32)
    # Scale-out (runtime/jobs/workers.py, runtime/leases.py): each job-running process heartbeats
    # this often; one whose heartbeat is older than worker_stale_seconds is dead and its running
    # jobs are marked interrupted (never before). The leader lease (scheduler, health and reconcile
    # loops on exactly one process) lapses this long after its holder stops renewing it.
    worker_heartbeat_seconds: PositiveSeconds = 5.0
    worker_stale_seconds: PositiveSeconds = 30.0
    leader_lease_seconds: PositiveSeconds = 30.0
    # API processes of ``hubctl serve`` sharing one listening socket. Unset: one per CPU when Redis
    # is configured, 1 on the embedded default (SQLite, in-process jobs).
    api_processes: int | None = Field(default=None, ge=1, le=256)
    log_level: LogLevel = LogLevel.INFO

    # Unset: the environment's own type (see effective_hub_type). Set: it must pair with the
    # environment by the rule hubinfra applies too (hubcore.contract.check_hub_type).
    hub_type: HubType | None = None
    hub_label: str | None = None
    experiment: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    # SHA-256 (hex) of the secret of the bootstrap API token hubinfra generated (`pulumi stack output
    # --show-secrets apiToken`); the service stores it at start with TokenStore.ensure. Never the token.
    api_token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    # Task machines (runtime/machines, docs/machines.md; the pool is ``pool`` above). The template and
    # networks are what hubinfra creates for this Hub; unset, machine commands refuse with one line.
    task_template_vmid: int | None = Field(default=None, ge=100, le=999_999_999)
    # Comma-separated vnets (or bridges) a machine's NIC may use; the first is the default.
    task_networks: str | None = None
    # Full clones of the template (false: linked clones, which need the template to stay).
    machine_full_clone: bool = True
    # cloud-init user and SSH public keys (one per line) of new task machines.
    machine_ci_user: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    machine_ssh_keys: str | None = None
    # Per-Hub limits over every machine in the pool (hubinfra writes them; unset: no limit).
    pool_max_cores: int | None = Field(default=None, ge=0, le=1_000_000)
    pool_max_memory_mib: int | None = Field(default=None, ge=0, le=1_000_000_000)
    pool_max_disk_gb: int | None = Field(default=None, ge=0, le=1_000_000_000)
    pool_max_machines: int | None = Field(default=None, ge=0, le=1_000_000)
    # Budget accounting: what an hour of a resource costs, in the budget's unit.
    cost_per_core_hour: float = Field(default=0.0, ge=0, le=1e6, allow_inf_nan=False)
    cost_per_gib_hour_memory: float = Field(default=0.0, ge=0, le=1e6, allow_inf_nan=False)
    cost_per_gib_hour_disk: float = Field(default=0.0, ge=0, le=1e6, allow_inf_nan=False)
    # A project over its budget: warned at once, its running machines stopped after this grace.
    budget_grace_seconds: Seconds = 3600.0
    # Idle: CPU below the threshold (a fraction of its cores) for idle_seconds; optionally stopped.
    idle_cpu_threshold: float = Field(default=0.05, ge=0, le=1, allow_inf_nan=False)
    idle_seconds: PositiveSeconds = 4 * 3600.0
    idle_stop: bool = False
    # The sentinel (runtime/sentinel, outside the Hub VM; docs/recovery.md). Its Hub: `--hub-url` wins.
    sentinel_hub_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    sentinel_critical_probes: int = Field(default=3, ge=1, le=100)
    sentinel_probe_interval_seconds: PositiveSeconds = 15.0
    sentinel_probe_timeout_seconds: PositiveSeconds = 5.0
    sentinel_gate_timeout_seconds: PositiveSeconds = 300.0
    sentinel_max_runs_per_day: int = Field(default=3, ge=1, le=100)
    sentinel_backoff_seconds: Seconds = 900.0
    sentinel_shutdown_timeout_seconds: PositiveSeconds = 60.0
    sentinel_old_checkpoint_days: int = Field(default=7, ge=1, le=3650)
    # Apprise URLs (several separated by spaces or commas); unset: alerts go to the log only.
    alert_urls: SecretStr | None = None

    @field_validator("task_networks", mode="before")
    @classmethod
    def _networks_list(cls, value: object) -> object:
        # The environment spells them comma-separated; the settings file hubinfra renders has a list.
        if isinstance(value, list):
            return ",".join(str(item) for item in value)  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
        return value

    @field_validator("checkpoint_schedule")
    @classmethod
    def _valid_schedule(cls, value: str | None) -> str | None:
        # The rule hubinfra applies to hub:checkpoints.schedule, so what it accepts boots here.
        return None if value is None else validate_schedule(value)

    @field_validator("retention")
    @classmethod
    def _valid_labels(cls, value: dict[str, RetentionRule]) -> dict[str, RetentionRule]:
        for label in value:
            if not LABEL.fullmatch(label):
                raise ValueError(f"label {label!r}: lowercase letters, digits and '-', at most 32")
        return value

    @field_validator("proxmox_api_token")
    @classmethod
    def _valid_token(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never quotes the value: it is a secret.
        if value is not None and not _TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError(
                "expected user@realm!tokenid=secret (letters, digits and ._- only; no spaces or control "
                "characters such as a CR from a CRLF file)"
            )
        return value

    @field_validator("proxmox_url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            url = urlsplit(value)
            port = url.port
        except ValueError as exc:
            raise ValueError(f"not a usable URL ({exc})") from None
        if url.scheme != "https":
            raise ValueError("must be an https:// URL (the Proxmox API is only served over TLS)")
        if not url.hostname:
            raise ValueError("names no host (expected https://host:8006)")
        if url.username is not None or url.password is not None:
            raise ValueError("must not carry user:password@ (the API token authenticates)")
        if url.path not in ("", "/") or url.query or url.fragment:
            raise ValueError("must be the API's base, https://host[:port], with no path or query")
        if port == 0:
            raise ValueError("port 0 is not a port")
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            url = urlsplit(value)
            url.port  # noqa: B018 - parsing the port is the check
        except ValueError as exc:
            raise ValueError(f"not a usable URL ({exc})") from None
        if url.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("expected redis://host:port/db, rediss://... or unix:///path")
        if url.scheme != "unix" and not url.hostname:
            raise ValueError("names no host (expected redis://host:6379/0)")
        db = url.path.strip("/")
        if url.scheme != "unix" and db and not db.isdigit():
            raise ValueError("the path must be a database number, e.g. redis://host:6379/0")
        return value

    @model_validator(mode="after")
    def _scale_out_rules(self) -> Self:
        if self.worker_stale_seconds < 2 * self.worker_heartbeat_seconds:
            raise ValueError(
                "worker_stale_seconds must be at least twice worker_heartbeat_seconds (a live worker "
                "would be taken for dead after one late heartbeat)"
            )
        if self.worker_threads == 0 and self.redis_url is None:
            raise ValueError("worker_threads 0 needs redis_url (jobs then run in hubctl worker processes)")
        return self

    def effective_api_processes(self) -> int:
        """``api_processes``, or its default: one per CPU with Redis, one on the embedded default."""
        if self.api_processes is not None:
            return self.api_processes
        if self.redis_url is None:
            return 1
        return max(
            1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        )

    @model_validator(mode="after")
    def _production_rules(self) -> Self:
        if self.environment is Environment.PRODUCTION and self.proxmox_insecure:
            raise ValueError("proxmox_insecure: refused when environment is production")
        if self.proxmox_ca_bundle is not None and not self.proxmox_ca_bundle.is_file():
            raise ValueError(f"proxmox_ca_bundle: no such file {self.proxmox_ca_bundle}")
        return self

    @model_validator(mode="after")
    def _health_thresholds(self) -> Self:
        for what in ("disk", "memory", "failure"):
            degraded = getattr(self, f"health_{what}_degraded_percent")
            critical = getattr(self, f"health_{what}_critical_percent")
            if degraded > critical:
                raise ValueError(
                    f"health_{what}_degraded_percent: {degraded:g} is above the critical "
                    f"threshold {critical:g}"
                )
        if self.health_history_days * 86400 <= self.bless_window_seconds:
            # Blessing reads the history of the whole window.
            raise ValueError("health_history_days: must keep more history than bless_window_seconds")
        return self

    @model_validator(mode="after")
    def _hub_type_pairs_with_environment(self) -> Self:
        if self.hub_type is not None:
            try:
                check_hub_type(environment=self.environment, hub_type=self.hub_type)
            except ValueError as exc:
                raise ValueError(f"hub_type: {exc}") from None
        return self

    def task_network_list(self) -> list[str]:
        """``HUB_TASK_NETWORKS`` as a list (empty when unset)."""
        return [n.strip() for n in (self.task_networks or "").split(",") if n.strip()]

    @property
    def effective_hub_type(self) -> HubType:
        return self.hub_type if self.hub_type is not None else DEFAULT_HUB_TYPE[self.environment]

    @property
    def effective_schedule(self) -> str:
        if self.checkpoint_schedule is not None:
            return self.checkpoint_schedule
        return "0 0 * * *" if self.environment is Environment.PRODUCTION else "manual"

    @property
    def longest_vm_operation_seconds(self) -> float:
        """The longest one operation on a VM can take while holding its lock, from the bounds above:
        a snapshot task and the removal of a partial one (each up to the task timeout), waiting out a
        backup's config lock, transient retries, and a minute for everything else. A checkpoint
        'creating' for longer is stuck; a lock held for longer is stale."""
        return (
            2 * self.task_timeout_seconds
            + self.locked_retry_seconds
            + 2 * self.transient_retry_seconds
            + 60.0
        )

    def proxmox_access(self) -> ProxmoxAccess:
        """How to reach Proxmox, and nothing about which VM: enough for the sentinel (outside the Hub)
        and for code acting on many VMs. Fails naming the first missing setting."""
        from hubcore.proxmox import ProxmoxAccess  # the client's package: only when Proxmox is used

        if self.proxmox_url is None:
            raise SettingsError(env_name("proxmox_url"), "required for anything that touches Proxmox")
        if self.proxmox_api_token is None:
            raise SettingsError(env_name("proxmox_api_token"), "required for anything that touches Proxmox")
        full, _, secret = self.proxmox_api_token.get_secret_value().partition("=")
        user, _, tokenid = full.partition("!")
        verify: bool | str = True
        if self.proxmox_insecure:
            verify = False
        elif self.proxmox_ca_bundle is not None:
            verify = str(self.proxmox_ca_bundle)
        return ProxmoxAccess(
            url=self.proxmox_url,
            token_user=user,
            token_name=tokenid,
            token_secret=secret,
            verify=verify,
            timeout=self.api_timeout_seconds,
            transient_retry_seconds=self.transient_retry_seconds,
            locked_retry_seconds=self.locked_retry_seconds,
        )

    @property
    def proxmox_configured(self) -> bool:
        return self.proxmox_url is not None and self.proxmox_api_token is not None

    def hub_vmid(self) -> int:
        """The Hub VM's own id (``HUB_VMID``): the VM the Hub checkpoints when told no other."""
        if self.vmid is None:
            raise SettingsError(env_name("vmid"), "required: the id of the Hub VM")
        return self.vmid

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init (explicit overrides) > environment > the config file cloud-init wrote.
        return (init_settings, env_settings, _ConfigFileSource(settings_cls))


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


class _ConfigFileSource(InitSettingsSource):
    """The file named by HUB_CONFIG_FILE: YAML or JSON, keys as field names (``vmid``) or ``HUB_VMID``."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls, init_kwargs=_read_config_file(os.environ.get(env_name("config_file"))))


def _read_config_file(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(env_name("config_file"), f"cannot read {file}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(
            env_name("config_file"), f"{file} is not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
    import yaml  # only with a settings file (~0.9 MiB a process configured by its environment never needs)

    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
        # A document nested past any sane depth (or a YAML alias that contains itself) is refused
        # here, not deep inside validation.
        _check_depth(data, limit=_MAX_DEPTH)
    except (ValueError, yaml.YAMLError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise SettingsError(env_name("config_file"), f"{file} is not valid YAML/JSON: {first}") from None
    except RecursionError:
        raise SettingsError(env_name("config_file"), f"{file} nests too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(env_name("config_file"), f"{file} must hold a mapping of settings")
    out: dict[str, Any] = {}
    for key, value in data.items():  # pyright: ignore[reportUnknownVariableType]
        name = str(key)  # pyright: ignore[reportUnknownArgumentType]
        # ``HUB_VMID`` (environment spelling) or ``vmid`` (field name); not a blind prefix strip,
        # since ``hub_type`` is a field in its own right.
        out[name.removeprefix(ENV_PREFIX).lower() if name.isupper() else name] = value
    return out


_MAX_DEPTH = 32


def _check_depth(value: Any, *, limit: int, seen: frozenset[int] = frozenset()) -> None:
    if limit <= 0 or id(value) in seen:
        raise ValueError("the document nests too deeply (or refers to itself)")
    children: list[Any] = []
    if isinstance(value, dict):
        children = list(cast(dict[Any, Any], value).values())
    elif isinstance(value, list):
        children = cast(list[Any], value)
    for item in children:
        _check_depth(item, limit=limit - 1, seen=seen | {id(cast(object, value))})


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning any validation error into one SettingsError naming the setting."""
    try:
        return Settings(**overrides)
    except PydanticSettingsError as exc:
        # pydantic-settings' own error for a value it could not even parse (HUB_PARAMS that is not
        # JSON): name the setting, never echo the value.
        match = re.search(r'field "(\w+)"', str(exc))
        field = match.group(1) if match else ""
        raise SettingsError(env_name(field) if field else "settings", "not valid JSON") from None
    except RecursionError:
        raise SettingsError("settings", "a value nests too deeply") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(part) for part in err["loc"]]
        field = loc[0] if loc else ""
        message = err["msg"].removeprefix("Value error, ")
        if not field and ":" in message:  # model-level rule: "field: message"
            field, _, message = message.partition(":")
            message = message.strip()
        if err["type"] == "extra_forbidden":
            message = "unknown setting"
        raise SettingsError(env_name(field) if field else "settings", message) from None
