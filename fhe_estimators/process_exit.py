"""Keep the process exit status once Concrete has run a circuit.

Why: concrete-python's ``concrete/compiler/__init__.py`` registers
``atexit.register(_terminate_df_parallelization)`` at import. That handler
calls the runtime's ``_dfr_terminate()``, which, once Concrete's dataflow
runtime (HPX) has been started, stops it and then calls the C library's
``exit(EXIT_SUCCESS)`` from inside Python's atexit phase. The runtime is not
only started by ``Configuration(dataflow_parallelize=True)``: every compiled
circuit calls ``_dfr_start(1, ...)`` when it runs, so a single encrypted *or
simulated* prediction is enough (measured with concrete-python 2.10.0). From
then on:

* the process exits with status 0 whatever happened: ``sys.exit(3)``, an
  uncaught exception, or pytest reporting failed tests (CI goes green);
* Python's finalization is cut short, and every atexit handler registered
  before ``concrete.compiler`` was imported (``logging.shutdown`` among them)
  never runs.

Stopping the runtime is not needed for a process to exit cleanly on one
machine: the runtime's worker threads end with the process, as every other
thread does (exit statuses, threaded encrypted execution and stderr were
checked over repeated runs). Only Concrete's *distributed* dataflow mode (an
HPX run over several nodes, which this package never sets up) needs the root
node to stop the others; such a program should call
``concrete.compiler._terminate_df_parallelization()`` itself as its last step,
knowing the process then exits with status 0.
"""

from __future__ import annotations

import atexit

import concrete.compiler  # imported here so its atexit registration has happened before we undo it


def keep_exit_status() -> None:
    """Unregister Concrete's exit handler so the process keeps its exit status. Idempotent."""
    handler = getattr(concrete.compiler, "_terminate_df_parallelization", None)
    if handler is not None:  # absent in a Concrete version that dropped it: nothing to undo
        atexit.unregister(handler)  # removes every registration of it; a no-op when there is none
