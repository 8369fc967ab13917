"""How the Pulumi program process runs: garbage collection tuned for one short evaluation.

Measured (benchmarks/infra_eval.py, docs/performance.md "Pulumi program"): with CPython's default
thresholds the program's cost per extra hub grew with the stack (full collections walk a heap that
grows with every hub, and the SDK makes cyclic garbage per property it serialises, e.g. the
recursive closure in pulumi/runtime/rpc.py `contains_unknowns`), which made evaluation quadratic.
The program is one short process (the language host starts it for one preview or update), so:

- `gc.freeze()` once the modules are imported: the ~90,000 objects of pulumi, the provider SDK and
  pydantic are never garbage and never scanned again;
- the oldest generation is collected only after 1,000 (not 10) young-generation sweeps, i.e. in
  practice not during one evaluation. Young collections stay as they are, so the SDK's short-lived
  cycles are still freed where they are made; what the rare full sweep would have freed (objects
  that outlived two young sweeps, such as a resolved registration's futures) is a few MB at 100
  extra hubs, released when the process ends.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 700  # CPython's default
MIDDLE_THRESHOLD = 10  # CPython's default
OLD_THRESHOLD = 1_000  # CPython's default is 10


def tune_gc_for_evaluation() -> None:
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
