"""Task machines: projects, quotas, budgets and the VM lifecycle (docs/machines.md)."""
