"""Job results, and waiters that want a NOTIFY when a job finishes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from pgjobs.migrate import run_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE {schema}.jobs ADD COLUMN result jsonb;
COMMENT ON COLUMN {schema}.jobs.result IS
    'what the handler returned (JSON), kept while the completed job is retained';

-- A client blocked in wait(job_id) registers here and LISTENs on {schema}_finished; the
-- worker that records the job's outcome sends that NOTIFY only if a row here asks for it,
-- so finishing jobs nobody waits for never takes the commit-time NOTIFY lock.
CREATE TABLE {schema}.waiters (
    job_id bigint NOT NULL,
    since  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX waiters_job_id_idx ON {schema}.waiters (job_id);
COMMENT ON TABLE {schema}.waiters IS
    'pgjobs: clients waiting for a job to finish (see Client.wait)';
"""

DOWNGRADE = """
DROP TABLE {schema}.waiters;
ALTER TABLE {schema}.jobs DROP COLUMN result;
"""


def upgrade() -> None:
    run_sql(UPGRADE)


def downgrade() -> None:
    run_sql(DOWNGRADE)
