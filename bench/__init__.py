"""pgjobs beside Procrastinate and PGQueuer: one command, the same Postgres, one run.

Run ``python -m bench.run --quick`` from the repository root with the bench venv
(see ``bench/README.md``). Nothing here is imported by pgjobs itself.
"""
