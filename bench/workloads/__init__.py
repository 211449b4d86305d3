"""The workloads, one module per family; each returns :class:`bench.results.Result` rows."""
