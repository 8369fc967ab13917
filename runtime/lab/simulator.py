"""The lab's local Proxmox API: fakepve, run as its own process on loopback.

fakepve is AGPL-licensed and only in the ``lab`` extra. This module is the one place in ``runtime``
that imports it, and it only ever runs as a separate process (``python -m runtime.lab.simulator``),
started by ``hubctl lab``; no other module imports it. A test checks both.

It serves over TLS with a certificate it makes for 127.0.0.1, writes that certificate where the Hub
will look for its CA, puts the Hub VM in the fake cluster, accepts the Hub's API token (read from
the environment, never from argv) and prints one JSON line once it listens.

Fault injection for the lab's acts (fakepve's own ``FakePve.fail``): on SIGUSR1 it reads
``<state-dir>/faults.json`` (a list of ``{"method", "suffix", "error"}``, ``error`` a name from
fakepve's catalogue of PVE's real errors) and applies each, then prints one JSON line
``{"faults": N}`` so the lab knows they are in place before it goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

TOKEN_ENV = "HUB_LAB_TOKEN"  # user@realm!tokenid=secret
# The task-machine set-up hubinfra would make (runtime/lab/machines_act.py): a pool, and a template on
# a second node, so machines land on another node than the Hub.
TASK_POOL = "hub-lab"
TASK_TEMPLATE_VMID = 9000
TASK_NODE = "pve2"
FAULTS_FILE = "faults.json"


async def serve(args: argparse.Namespace) -> None:
    from fakepve import FakePve  # pyright: ignore[reportMissingTypeStubs]
    from fakepve.certs import make_cert  # pyright: ignore[reportMissingTypeStubs, reportUnknownVariableType]

    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    certfile, keyfile, _ = make_cert(str(state), name="pve", hosts=(args.host,))
    pve: Any = FakePve(user="root@pam", password=os.urandom(16).hex(), host=args.host, port=args.port)
    pve.time_scale = args.time_scale
    tokenid, _, secret = os.environ[TOKEN_ENV].partition("=")
    pve.apitokens[tokenid] = secret
    pve.add_vm(
        args.vmid,
        "hub",
        node=args.node,
        status="running",
        config={
            "scsi0": f"local-lvm:vm-{args.vmid}-disk-0,size=50G",
            "cores": 4,
            "memory": 8192,
            "agent": "1",
        },
    )
    pve.add_node(TASK_NODE)
    pve.pools[TASK_POOL] = set()
    pve.add_vm(
        TASK_TEMPLATE_VMID,
        "task-template",
        node=TASK_NODE,
        template=True,
        config={"scsi0": f"local-lvm:base-{TASK_TEMPLATE_VMID}-disk-0,size=8G", "cores": 1, "memory": 512},
    )
    await pve.start(certfile, keyfile)
    print(json.dumps({"url": pve.url, "cafile": certfile}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def inject() -> None:
        faults = json.loads((state / FAULTS_FILE).read_text())
        for f in faults:
            pve.fail(f["method"], f["suffix"], error=f["error"])
        print(json.dumps({"faults": len(faults)}), flush=True)

    loop.add_signal_handler(signal.SIGUSR1, inject)
    await stop.wait()
    await pve.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--node", default="pve1")
    parser.add_argument("--vmid", type=int, default=100)
    parser.add_argument("--time-scale", type=float, default=0.2)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args))
    except ModuleNotFoundError as exc:
        print(f"simulator: {exc.name} is missing: install the lab extra (make lab does)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
