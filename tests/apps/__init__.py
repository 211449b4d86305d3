"""Worker applications for the process-level tests, and the harness that runs them.

The tests start real worker processes (``python -m pgjobs worker tests.apps.jobs:server``)
with the repository root as their working directory; environment variables configure the
app (see :mod:`tests.apps.jobs`). :mod:`tests.apps.procs` starts, watches and stops them.
"""
