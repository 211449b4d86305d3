"""The pgjobs schema: jobs, workers, queues, throughput, waiters, unique keys, leader
election, the operator views and functions, enqueue from SQL, and least-privilege roles.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from pgjobs.migrate import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The newest revision runs the declared schema itself; the next revision first
    # freezes a copy for this one (see the head of migrations/schema.sql).
    run_sql_file("schema.sql")


def downgrade() -> None:
    run_sql_file("versions/0001_initial.downgrade.sql")
