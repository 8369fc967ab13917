"""Fleet operations: many of the Hub's VMs at once (selection, bounded runner, job, owned reconcile)."""
