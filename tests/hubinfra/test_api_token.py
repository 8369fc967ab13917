"""The bootstrap API token: a secret stack output, its hash in the VM's settings, accepted by the runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hubinfra.api_token import BOOTSTRAP_TOKEN_NAME, derive_api_token
from runtime.db import Database
from runtime.errors import UsageError
from runtime.settings import load_settings
from runtime.tokens import BOOTSTRAP_TOKEN_NAME as RUNTIME_BOOTSTRAP_NAME
from runtime.tokens import TokenStore
from tests.hubinfra.harness import API_TOKEN_SEED, OPERATOR_SECRETS, Run, run_program
from tests.hubinfra.test_program import FILE, settings_of, user_data


def _all_snippet_text(run: Run) -> str:
    return "\n".join(json.dumps(r.inputs) for r in run.of_type(FILE))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_api_token_is_a_secret_output_and_the_vm_gets_only_its_hash(
    request: pytest.FixtureRequest, stack: str
) -> None:
    run: Run = request.getfixturevalue(stack)
    token = run.outputs["apiToken"]
    assert "apiToken" in run.secret_outputs
    expected = derive_api_token(
        API_TOKEN_SEED, run.one("proxmoxve:index/vmLegacy:VmLegacy", "hub-hub-vm").inputs["name"]
    )
    assert token == expected.token
    settings = settings_of(user_data(run, "hub-hub"))
    assert settings["api_token_sha256"] == expected.sha256
    # Neither the token nor its secret part is anywhere in any user data (hence on no disk or clone).
    secret = token.split("_", 2)[2]
    text = _all_snippet_text(run)
    assert token not in text and secret not in text
    assert API_TOKEN_SEED not in text


def test_api_token_is_stable_across_runs(dev: Run) -> None:
    # `pulumi up` re-runs the program: the token (and the settings file) must not change each time.
    assert run_program("dev").outputs["apiToken"] == dev.outputs["apiToken"]


def test_domain_hubs_get_their_own_token() -> None:
    def edit(config: dict[str, Any]) -> None:
        config["hub:domainHubs"] = [{"name": "acme", "type": "client", "label": "Acme", "vmId": 1161}]

    run = run_program("dev", edit=edit)
    main, acme = run.outputs["apiToken"], run.outputs["domainHubs"]["acme"]["apiToken"]
    assert main != acme
    assert settings_of(user_data(run, "hub-client-acme-hub"))["api_token_sha256"] == (
        derive_api_token(API_TOKEN_SEED, "hub-dev-acme").sha256
    )
    assert main not in _all_snippet_text(run) and acme not in _all_snippet_text(run)


def test_without_a_seed_there_is_no_token() -> None:
    run = run_program("dev", secrets={"hub:proxmoxApiToken": OPERATOR_SECRETS["hub:proxmoxApiToken"]})
    assert run.exit_code is None
    assert "apiToken" not in run.outputs
    assert "api_token_sha256" not in settings_of(user_data(run, "hub-hub"))


def test_a_short_or_plain_text_seed_is_refused() -> None:
    short = run_program("dev", secrets={**OPERATOR_SECRETS, "hub:apiTokenSeed": "short"})
    assert short.exit_code == 32
    assert any("hub:apiTokenSeed: must be at least 32 characters" in m for m in short.errors)
    assert not any("short" in m.split(":", 2)[-1].split("(")[0] for m in short.errors)

    def plain(config: dict[str, Any]) -> None:
        config["hub:apiTokenSeed"] = API_TOKEN_SEED

    run = run_program(
        "dev", edit=plain, secrets={"hub:proxmoxApiToken": OPERATOR_SECRETS["hub:proxmoxApiToken"]}
    )
    assert run.exit_code == 32
    assert any("hub:apiTokenSeed: must be set with `pulumi config set --secret" in m for m in run.errors)


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    db = Database(f"sqlite:///{tmp_path / 'hub.db'}")
    db.upgrade()
    return TokenStore(db)


def test_ensure_makes_the_generated_token_verifiable_and_is_idempotent(store: TokenStore) -> None:
    token = derive_api_token(API_TOKEN_SEED, "hub-dev")
    first = store.ensure(name=BOOTSTRAP_TOKEN_NAME, sha256=token.sha256, actor="hubinfra")
    again = store.ensure(name=BOOTSTRAP_TOKEN_NAME, sha256=token.sha256, actor="hubinfra")
    assert first["id"] == again["id"] == token.token_id
    assert [t["name"] for t in store.list()] == [BOOTSTRAP_TOKEN_NAME]
    assert store.verify(token.token) == BOOTSTRAP_TOKEN_NAME
    assert store.verify(token.token[:-1] + ("A" if token.token[-1] != "A" else "B")) is None


def test_ensure_keeps_a_revocation_and_a_new_seed_replaces_the_old_token(store: TokenStore) -> None:
    old = derive_api_token(API_TOKEN_SEED, "hub-dev")
    store.ensure(name=BOOTSTRAP_TOKEN_NAME, sha256=old.sha256, actor="hubinfra")
    store.revoke(name=BOOTSTRAP_TOKEN_NAME, actor="operator")
    store.ensure(name=BOOTSTRAP_TOKEN_NAME, sha256=old.sha256, actor="hubinfra")  # the next start
    assert store.verify(old.token) is None

    new = derive_api_token("another-seed-of-at-least-32-characters", "hub-dev")
    store.ensure(name=BOOTSTRAP_TOKEN_NAME, sha256=new.sha256, actor="hubinfra")
    assert store.verify(new.token) == BOOTSTRAP_TOKEN_NAME
    assert store.verify(old.token) is None
    names = {t["name"]: t for t in store.list()}
    assert names[f"{BOOTSTRAP_TOKEN_NAME}.{old.token_id}"]["revoked_at"] is not None


def test_hubinfra_and_the_runtime_name_the_token_alike() -> None:
    assert BOOTSTRAP_TOKEN_NAME == RUNTIME_BOOTSTRAP_NAME


def test_ensure_rejects_a_value_that_is_not_a_sha256(store: TokenStore) -> None:
    with pytest.raises(UsageError, match="64 lowercase hex"):
        store.ensure(name=BOOTSTRAP_TOKEN_NAME, sha256="hub_" + "0" * 60, actor="hubinfra")


def test_runtime_settings_accept_the_hash_and_refuse_anything_else(dev: Run) -> None:
    settings = settings_of(user_data(dev, "hub-hub"))
    loaded = load_settings(api_token_sha256=settings["api_token_sha256"])
    assert loaded.api_token_sha256 == settings["api_token_sha256"]
    from runtime.errors import SettingsError

    with pytest.raises(SettingsError, match="HUB_API_TOKEN_SHA256"):
        load_settings(api_token_sha256=dev.outputs["apiToken"])


def test_an_experiment_clone_gets_no_token_of_the_hub() -> None:
    from tests.hubinfra.test_experiments import with_faster_gate

    run = run_program("dev", edit=with_faster_gate)
    token = run.outputs["apiToken"]
    settings = run.outputs["experiments"]["faster-gate"]["settings"]
    assert "api_token_sha256" not in settings
    assert token not in settings and token not in _all_snippet_text(run)
