"""The sentinel: watches the Hub from outside its VM and walks the recovery ladder through Proxmox.

A rollback of the Hub VM stops the process that ordered it and puts the Hub's database back to the
checkpoint's moment, so recovery is ordered from outside (a peer hub, a small VM, an operator's
machine) and its history is kept twice: in the sentinel's own small database (``store``) and on the
Hub VM's Proxmox description (``mirror``), which a rollback keeps (pve-guest-common
``src/PVE/AbstractConfig.pm`` __snapshot_apply_config: "keep description and list of unused disks").

Start-up stays light: SQLAlchemy Core and the Proxmox client only, no Alembic, FastAPI or Dramatiq.
See docs/recovery.md for the design.
"""
