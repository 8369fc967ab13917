"""Checkpoints of the Hub VM: protocol, reconcile, retention, schedule."""
