"""The runtime's one settings object.

Read once at the edge (CLI start-up) from ``HUB_*`` environment variables and an optional YAML/JSON
file (``HUB_CONFIG_FILE``, written by cloud-init), then passed explicitly to every service and loop.
The environment wins over the file, so an operator can override one value without editing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from hubcore.contract import DEFAULT_HUB_TYPE, Environment, HubType, check_hub_type, validate_schedule
from runtime.errors import SettingsError

if TYPE_CHECKING:
    from hubcore.proxmox import ProxmoxAccess

ENV_PREFIX = "HUB_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    environment: Environment = Environment.DEVELOPMENT
    database_url: str = "sqlite:///./hub.db"
    redis_url: str | None = None
    proxmox_url: str | None = None
    proxmox_api_token: SecretStr | None = None
    proxmox_ca_bundle: Path | None = None
    proxmox_insecure: bool = False
    node: str | None = None
    vmid: int | None = Field(default=None, ge=100, le=999_999_999)
    config_file: Path | None = None
    # Where cross-process file locks live when Redis is not configured (default: the temp dir).
    lock_dir: Path | None = None

    # Checkpoint policy. A 5-field cron expression evaluated in UTC, or "manual". Unset: production
    # checkpoints daily at 00:00 UTC, every other environment only on demand.
    checkpoint_schedule: str | None = None
    # Retention, with Proxmox Backup Server's prune semantics (see runtime/checkpoints/retention.py).
    keep_last: int = Field(default=3, ge=0)
    keep_hourly: int = Field(default=0, ge=0)
    keep_daily: int = Field(default=14, ge=0)
    keep_weekly: int = Field(default=8, ge=0)
    keep_monthly: int = Field(default=6, ge=0)

    # How long a second checkpoint request waits for the VM's checkpoint lock before it is refused.
    lock_wait_seconds: float = Field(default=30.0, ge=0)
    # Upper bound on one Proxmox task (snapshot, delete), and on retrying a VM config lock held by
    # another task (a backup can hold it for a long time; we give up and say so).
    task_timeout_seconds: float = Field(default=600.0, gt=0)
    locked_retry_seconds: float = Field(default=120.0, ge=0)
    api_timeout_seconds: float = Field(default=15.0, gt=0)
    # Transient faults (connection errors, 5xx) are retried this long before the operation fails.
    transient_retry_seconds: float = Field(default=30.0, ge=0)

    # Identity: the SMBIOS uuid of the VM this settings file was written for (hubinfra sets it). A
    # snapshot clone inherits the source's file but gets a new uuid, so a mismatch means "these
    # settings are not mine" and the runtime refuses to touch Proxmox (see runtime/identity.py).
    vm_uuid: str | None = None
    product_uuid_file: Path = Path("/sys/class/dmi/id/product_uuid")
    # Experimental hubs: the VM and checkpoint they were cloned from (informational; never acted on).
    source_vmid: int | None = Field(default=None, ge=100, le=999_999_999)
    source_checkpoint: str | None = None

    # The service: how long start-up waits for the database, and how often the health loop runs.
    db_wait_seconds: float = Field(default=60.0, ge=0)
    health_interval_seconds: float = Field(default=30.0, gt=0)
    worker_threads: int = Field(default=2, ge=1, le=32)

    # Unset: the environment's own type (see effective_hub_type). Set: it must pair with the
    # environment by the rule hubinfra applies too (hubcore.contract.check_hub_type).
    hub_type: HubType | None = None
    hub_label: str | None = None
    experiment: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("checkpoint_schedule")
    @classmethod
    def _valid_schedule(cls, value: str | None) -> str | None:
        # The rule hubinfra applies to hub:checkpoints.schedule, so what it accepts boots here.
        return None if value is None else validate_schedule(value)

    @field_validator("proxmox_api_token")
    @classmethod
    def _valid_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        user, sep, secret = value.get_secret_value().partition("=")
        if not sep or not secret or "!" not in user or "@" not in user.split("!")[0]:
            raise ValueError("expected user@realm!tokenid=secret")
        return value

    @field_validator("proxmox_url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("must be an https:// URL (the Proxmox API is only served over TLS)")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _production_rules(self) -> Self:
        if self.environment is Environment.PRODUCTION and self.proxmox_insecure:
            raise ValueError("proxmox_insecure: refused when environment is production")
        if self.proxmox_ca_bundle is not None and not self.proxmox_ca_bundle.is_file():
            raise ValueError(f"proxmox_ca_bundle: no such file {self.proxmox_ca_bundle}")
        return self

    @model_validator(mode="after")
    def _hub_type_pairs_with_environment(self) -> Self:
        if self.hub_type is not None:
            try:
                check_hub_type(environment=self.environment, hub_type=self.hub_type)
            except ValueError as exc:
                raise ValueError(f"hub_type: {exc}") from None
        return self

    @property
    def effective_hub_type(self) -> HubType:
        return self.hub_type if self.hub_type is not None else DEFAULT_HUB_TYPE[self.environment]

    @property
    def effective_schedule(self) -> str:
        if self.checkpoint_schedule is not None:
            return self.checkpoint_schedule
        return "0 0 * * *" if self.environment is Environment.PRODUCTION else "manual"

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
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0]
        raise SettingsError(env_name("config_file"), f"{file} is not valid YAML/JSON: {first}") from None
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


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning any validation error into one SettingsError naming the setting."""
    try:
        return Settings(**overrides)
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
