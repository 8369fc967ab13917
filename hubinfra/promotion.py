"""Promote stack settings from one stack to another (`hubctl promote dev prod`).

Only an explicit allowlist of keys moves: what the Hub runs (`runtime.*`) and the egress endpoints
task VMs may reach. Everything else in a stack file is environment-specific and stays untouched:
checkpoint policy, protection, sizing floors, endpoints, node, template, pools, quotas, networks,
experiments, and every secret (`secure:` values and keys outside the `hub:` namespace).

No pulumi import: this runs from hubctl inside the Hub VM as well as on an operator's machine.
Writing is atomic (temporary file + rename) and happens only through `write_promotion`, which the
CLI calls after confirmation.

The destination file is edited in place (hubinfra/yaml_edit.py): only the lines of the promoted keys
change; comments, order, quoting and indentation elsewhere stay byte for byte, so the diff shown is
the promotion and nothing else. Promoting from a production stack into a development one is allowed
(e.g. to reproduce prod in dev) but warned about: the usual direction is dev -> prod.

Relation to `pulumi config cp --stack SRC --dest DST --path KEY`: that copies any one key (and
re-encrypts secrets for DST's secrets provider), with no allowlist, no validation of the result and
no diff; `hubctl promote` moves only the allowlisted, non-secret keys, validates DST's whole config
with the stack-config model first, and shows the diff before writing. Secrets are never promoted.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from hubinfra.config import (
    NAMESPACE,
    ConfigError,
    config_from_stack_file,
    decode_config_value,
    parse_stack_config,
)
from hubinfra.yaml_edit import EditError, edit_mapping_keys

# (top-level key under hub:, nested key or None for the whole value)
PROMOTED_KEYS: tuple[tuple[str, str | None], ...] = (
    ("runtime", "repoUrl"),
    ("runtime", "ref"),
    ("runtime", "params"),
    ("network", "allowedEgress"),
)

ENVIRONMENT_SPECIFIC = (
    "environment, proxmox (endpoint, TLS, SSH), node, nodes, templateVmId, datastore, snippetsDatastore, "
    "userId, protect, hubVm (sizing floors, vmId, address), hubType, hubLabel, network (zone, vnets, "
    "VLANs, CIDRs, cluster firewall), pool, quotas, checkpoints, experiments, domainHubs"
)

_STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class PromotionError(Exception):
    """The promotion cannot be done as asked (exit code 1)."""


class PromotionInputError(PromotionError):
    """Bad input: names the argument (exit code 2)."""


@dataclass(frozen=True, slots=True)
class Change:
    key: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class PromotionPlan:
    src: str
    dst: str
    path: Path
    changes: tuple[Change, ...]
    original_text: str
    new_text: str
    warnings: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.changes

    def as_dict(self) -> dict[str, Any]:
        return {
            "src": self.src,
            "dst": self.dst,
            "file": str(self.path),
            "changes": [{"key": c.key, "before": c.before, "after": c.after} for c in self.changes],
            "warnings": list(self.warnings),
        }


def stack_file(project_dir: Path, stack: str, *, argument: str) -> Path:
    if not _STACK_NAME.fullmatch(stack):
        raise PromotionInputError(f"{argument}: '{stack}' is not a valid stack name")
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise PromotionInputError(f"{argument}: no stack file {path}")
    return path


def _load(path: Path, argument: str) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PromotionInputError(
            f"{argument}: {path} is not valid YAML ({exc.__class__.__name__})"
        ) from None
    if not isinstance(document, dict):
        raise PromotionInputError(f"{argument}: {path} has no 'config:' mapping")
    loaded = cast(dict[str, Any], document)
    if not isinstance(loaded.get("config"), dict):
        raise PromotionInputError(f"{argument}: {path} has no 'config:' mapping")
    return loaded


def _get(config: dict[str, Any], top: str, nested: str | None) -> Any:
    value = decode_config_value(config.get(f"{NAMESPACE}:{top}"))
    if nested is None or value is None:
        return value
    return cast(dict[str, Any], value).get(nested) if isinstance(value, dict) else None


def plan_promotion(*, project_dir: Path, src: str, dst: str) -> PromotionPlan:
    """Compute what would change in `dst`'s stack file. Writes nothing."""
    if src == dst:
        raise PromotionInputError(f"DST: '{dst}' is the same stack as SRC")
    src_path = stack_file(project_dir, src, argument="SRC")
    dst_path = stack_file(project_dir, dst, argument="DST")
    src_config = _load(src_path, "SRC")["config"]
    original_text = dst_path.read_text()
    dst_document = _load(dst_path, "DST")
    dst_config: dict[str, Any] = dst_document["config"]

    changes: list[Change] = []
    edits: list[tuple[list[str], Any]] = []
    for top, nested in PROMOTED_KEYS:
        before, after = _get(dst_config, top, nested), _get(src_config, top, nested)
        if after is None or before == after:
            continue
        key = f"{NAMESPACE}:{top}" + (f".{nested}" if nested else "")
        changes.append(Change(key=key, before=before, after=after))
        full_key = f"{NAMESPACE}:{top}"
        if nested is None:
            dst_config[full_key] = after
            edits.append((["config", full_key], after))
        else:
            raw = dst_config.get(full_key)
            current = decode_config_value(raw)
            block: dict[str, Any] = dict(cast(dict[str, Any], current)) if isinstance(current, dict) else {}
            block[nested] = after
            dst_config[full_key] = block
            # A block stored as JSON text (or absent) is rewritten whole; a mapping key by key.
            if isinstance(raw, dict):
                edits.append((["config", full_key, nested], after))
            else:
                edits.append((["config", full_key], block))

    try:
        parse_stack_config(config_from_stack_file(dst_document))
    except ConfigError as exc:
        raise PromotionError(f"the promoted {dst} config would be invalid: {exc}") from None

    new_text = original_text
    if changes:
        try:
            new_text = edit_mapping_keys(original_text, edits, dst_document)
        except EditError as exc:
            raise PromotionError(f"cannot edit {dst_path} in place: {exc}") from None
    warnings: list[str] = []
    src_env = str(src_config.get(f"{NAMESPACE}:environment", ""))
    dst_env = str(dst_config.get(f"{NAMESPACE}:environment", ""))
    if src_env == "production" and dst_env != "production":
        warnings.append(
            f"promoting from the production stack '{src}' into the {dst_env or 'non-production'} stack "
            f"'{dst}': the usual direction is dev -> prod; {dst} gets prod's runtime ref and params"
        )
    return PromotionPlan(
        src=src,
        dst=dst,
        path=dst_path,
        changes=tuple(changes),
        original_text=original_text,
        new_text=new_text,
        warnings=tuple(warnings),
    )


def render_diff(plan: PromotionPlan) -> str:
    """A unified diff of the destination stack file."""
    return "".join(
        difflib.unified_diff(
            plan.original_text.splitlines(keepends=True),
            plan.new_text.splitlines(keepends=True),
            fromfile=f"{plan.path.name} (current)",
            tofile=f"{plan.path.name} (promoted from {plan.src})",
        )
    )


def write_promotion(plan: PromotionPlan) -> None:
    """Atomically replace the destination stack file; refuses if it changed since planning."""
    if plan.path.read_text() != plan.original_text:
        raise PromotionError(f"{plan.path} changed since the diff was shown; run the promotion again")
    fd, tmp = tempfile.mkstemp(dir=plan.path.parent, prefix=f".{plan.path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(plan.new_text)
        os.replace(tmp, plan.path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
