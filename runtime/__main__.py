"""``python -m runtime``: the same as ``hubctl``.

The collector is off before the CLI's own imports too (``main`` keeps it off for a short command
and a long-running one turns it back on; see runtime/cli/process.py).
"""

import gc

gc.disable()

from runtime.cli import main  # noqa: E402  # after gc.disable(), on purpose

main()
