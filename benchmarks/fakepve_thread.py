"""Serve fakepve from a thread of the benchmark process (as its pytest plugin does), with a CA file.

Benchmarks are not production code: importing fakepve (AGPL, lab/dev extra) here is fine.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from fakepve import FakePve  # pyright: ignore[reportMissingTypeStubs]
from fakepve.certs import make_cert  # pyright: ignore[reportMissingTypeStubs]

TOKEN_ID = "hub@pve!bench"
TOKEN_SECRET = "0f0e0d0c-0b0a-0908-0706-050403020100"


class ServedPve:
    def __init__(self, state: Path, *, time_scale: float = 0.0) -> None:
        certfile, keyfile, _ = make_cert(str(state), name="bench", hosts=("127.0.0.1",))
        self.cafile: str = certfile
        self.pve: Any = FakePve(user="root@pam", password="bench", host="127.0.0.1", port=0)
        self.pve.time_scale = time_scale
        self.pve.max_requests = 10**7
        self.pve.apitokens[TOKEN_ID] = TOKEN_SECRET
        self.pve.add_vm(
            100, "hub", node="pve1", status="running", config={"scsi0": "local-lvm:vm-100-disk-0,size=50G"}
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.pve.start(certfile, keyfile), self.loop).result(30)

    @property
    def url(self) -> str:
        return str(self.pve.url)

    def slow_snapshots(self, secs: float) -> None:
        """Snapshot tasks take ``secs`` PVE seconds (the disk moves to slow Ceph storage)."""
        self.pve.vm(100).config["scsi0"] = "ceph-pool:vm-100-disk-0,size=50G"
        self.pve.add_ceph_storage()
        self.pve.ceph_slow(secs)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.pve.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
