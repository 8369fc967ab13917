"""How the Pulumi program process runs: no cyclic garbage collection during its one evaluation.

Measured (benchmarks/infra_eval.py, docs/performance.md "Pulumi program"): with CPython's default
thresholds the program's cost per extra hub grew with the stack. Full collections walked a heap that
grows with every hub, and so, in a smaller way, did the young ones: at 100 extra hubs ~1,000 young
and ~90 middle collections took 0.3 s of 2.1 s, their cost per collection growing with the stack
(0.13 ms each at 10 extra hubs, 0.20 ms at 100), while every other function's total grew with the
resource count (cProfile of 10 against 100 extra hubs with the collector off: 7.9x the time for 8.3x
the resources). The program is one process of one evaluation (the language host starts it for one
preview or update, and it ends with the deployment), so:

- `gc.freeze()` once the modules are imported: the ~90,000 objects of pulumi, the provider SDK and
  pydantic are never garbage and never scanned;
- the collector is off for the rest of the process. Reference counting still frees nearly
  everything; what only the collector would free (the SDK's cycles, e.g. the recursive closure in
  pulumi/runtime/rpc.py `contains_unknowns`, one per serialised property) grows with the resource
  count, not with time: peak RSS at 100 extra hubs measured 160 MiB with young collections and 169
  MiB without (+9 MiB), released when the process ends.

Tests evaluate the program many times in one process: tests/hubinfra/harness.py puts the collector
back after each run.
"""

from __future__ import annotations

import gc


def tune_gc_for_evaluation() -> None:
    gc.freeze()
    gc.disable()
