"""The Hub's own health: checks, hysteresis, history and blessing (see each module).

``evaluate`` is one instantaneous evaluation (``checks.py``); the service's loop (``loop.py``)
settles a series of them into the verdict ``/readyz`` answers and the sentinel acts on.
"""

from runtime.health.checks import ORDER, Check, evaluate

__all__ = ["ORDER", "Check", "evaluate"]
