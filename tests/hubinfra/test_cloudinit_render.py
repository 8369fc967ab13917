"""The user data rendered from shared, once-dumped pieces is byte for byte the one-shot YAML dump."""

from __future__ import annotations

import itertools

import pytest
import yaml

from hubcore.contract import Environment
from hubinfra.cloudinit import RuntimeSettings, read_deploy_files, render_user_data, user_data_document
from hubinfra.config import CheckpointPolicy

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def settings(vmid: int) -> RuntimeSettings:
    return RuntimeSettings(
        environment=Environment.PRODUCTION,
        proxmox_url="https://pve.example:8006/",
        proxmox_api_token=f"hub@pve!hub={vmid}",
        proxmox_insecure=False,
        node="pve1",
        vmid=vmid,
        checkpoints=CheckpointPolicy(schedule="0 3 * * *"),
        hub_type="production",
        hub_label="Main: 'quoted' & #not-a-comment",
        vm_uuid=f"00000000-0000-0000-0000-{vmid:012d}",
        params={"a": 1, "b": "two\nlines"},
    )


@pytest.mark.parametrize(
    ("ssh_keys", "ca", "files"),
    list(itertools.product([[], ["ssh-ed25519 AAAA op@x"]], [None, PEM], ["repo", "none"])),
)
def test_rendered_text_is_the_dump_of_the_document(ssh_keys: list[str], ca: str | None, files: str) -> None:
    deploy = read_deploy_files() if files == "repo" else {}
    for vmid in (100, 101):  # the second render reuses the cached pieces
        kwargs = dict(
            hostname=f"hub-{vmid}",
            settings=settings(vmid),
            repo_url="https://example.org/hub.git",
            ref="main",
            ssh_keys=ssh_keys,
            deploy_files=deploy,
            ca_bundle_pem=ca,
        )
        text = render_user_data(**kwargs)  # type: ignore[arg-type]
        document = user_data_document(**kwargs)  # type: ignore[arg-type]
        assert text == "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False, width=1000)
        assert yaml.safe_load(text) == document


@pytest.mark.parametrize("vmid", [100, 101, 100])
def test_settings_text_is_the_dump_of_its_mapping(vmid: int) -> None:
    runtime = settings(vmid)
    assert runtime.render() == yaml.safe_dump(runtime.as_dict(), sort_keys=False)


def test_equal_scalars_of_other_types_are_not_confused() -> None:
    # 1 == True == 1.0 as cache keys; each entry must still be dumped as its own type.
    from hubinfra.cloudinit import _scalar_entry  # pyright: ignore[reportPrivateUsage]

    assert [_scalar_entry("k", v) for v in (True, 1, 1.0, "1")] == [
        yaml.safe_dump({"k": v}) for v in (True, 1, 1.0, "1")
    ]
