"""Worker apps, one module per system, each started by that system's own CLI.

Every app registers the same two handlers: ``noop`` (does nothing; its first call marks
the start of a drain) and ``ping`` (reports the moment it starts, for wakeup latency).
Both report through :mod:`bench.apps.signal`, so every system pays the same cost.
"""
