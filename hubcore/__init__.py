"""What both halves of the project share, and nothing else.

``hubinfra`` (the Pulumi program, run on an operator's machine) and ``runtime`` (the service inside
the Hub VM, and the sentinel outside it) both talk to the Proxmox API and both handle the values
that cross from a stack's config into the runtime's settings. Those live here, once:

- ``hubcore.proxmox``: the typed Proxmox API client (retries, task-success rule, typed errors);
- ``hubcore.errors``: the base of every expected failure, so both halves report them the same way.

This package imports neither ``hubinfra`` nor ``runtime`` (an import-linter contract enforces it).
"""
