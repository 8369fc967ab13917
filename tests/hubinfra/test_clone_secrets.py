"""A clone holds no other hub's secret: neither in what it is given nor in what it inherited."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from hubinfra.cloudinit import SCRUB_INHERITED_INSTANCES, parse_user_data
from tests.hubinfra.harness import TOKEN_SECRET, Run

FILE = "proxmoxve:index/fileLegacy:FileLegacy"


def test_the_clones_user_data_carries_only_its_own_token(dev_exp: Run) -> None:
    text = dev_exp.one(FILE, "faster-gate-user-data").inputs["sourceRaw"]["data"]
    hub = dev_exp.one(FILE, "hub-hub-user-data").inputs["sourceRaw"]["data"]
    assert TOKEN_SECRET in hub and TOKEN_SECRET not in text
    assert "hub-dev@pve!" not in text  # not the Hub's user either
    bootcmd = parse_user_data(text)["bootcmd"]
    assert bootcmd == [["sh", "-c", SCRUB_INHERITED_INSTANCES]]


def test_the_scrub_removes_the_sources_cloud_init_instances(tmp_path: Path) -> None:
    """The snapshot carries the source's /var/lib/cloud/instances/<id>/ (user-data.txt, obj.pkl)."""
    root = tmp_path / "cloud"
    source = root / "instances" / "hub-prod-instance"
    own = root / "instances" / "hub-prod-exp-alpha-0123456789abcdef"
    for directory in (source, own):
        directory.mkdir(parents=True)
    (source / "user-data.txt").write_text(
        yaml.safe_dump({"proxmox_api_token": f"hub@pve!hub-prod={TOKEN_SECRET}"})
    )
    (source / "obj.pkl").write_bytes(TOKEN_SECRET.encode())
    (own / "user-data.txt").write_text("its own")
    (root / "instance").symlink_to(own)
    subprocess.run(
        ["sh", "-c", SCRUB_INHERITED_INSTANCES], check=True, env={**os.environ, "CLOUD_ROOT": str(root)}
    )
    leftovers = [p for p in root.rglob("*") if p.is_file() and TOKEN_SECRET.encode() in p.read_bytes()]
    assert leftovers == []
    assert (own / "user-data.txt").read_text() == "its own"
