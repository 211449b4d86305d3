"""Cheaper inserts: one index for every job that is not available, and shorter rules.

An insert pays for every partial index of its table, whether or not the new row goes
into it: PostgreSQL locks and opens each one, and prepares its predicate, for every
statement. A new job goes into ``jobs_claim_idx`` at most, yet it paid for three more:
``jobs_scheduled_idx``, ``jobs_running_idx`` and ``jobs_finished_idx``. One index takes
their place, ``jobs_state_time_idx``: every job that is not available, by state and by
the time that matters in that state (when a scheduled job is due, when a running job's
lease runs out, when a finished job finished). Staging, crash recovery and pruning read
it with that same expression.

The rules on ``kind`` and ``queue`` lose ``length(VALUE) >= 1``, which ``btrim(VALUE) <>
''`` already implies: the same values pass and fail. A domain's rule is prepared for
every statement too, at about 1,000 instructions per step.

The server's instructions per ``job_insert_defaults`` (the statement of a plain
``pgjobs.enqueue``), counted by callgrind on a single-user backend (bench/README): 212,600
before, 193,700 after; the plain INSERT of the benchmark's ceiling takes 81,200.

Upgrading a populated table: building the index, and checking the rows against the two
rules (one read of the table each), block writes to ``pgjobs.jobs`` (enqueues, claims
and completions wait); dropping the old indexes, last, blocks reads too until the
migration commits. Quick unless millions of finished jobs are retained.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from pgjobs.migrate import run_sql, upgrade_statements

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: The time by which jobs_state_time_idx orders the jobs of each state. A query uses
#: the index only when it writes this expression the same way (pgjobs/sql/jobs.sql,
#: prune.sql, admin.sql).
STATE_TIME = (
    "CASE state WHEN 'scheduled' THEN run_at WHEN 'running' THEN lease_expires_at "
    "ELSE finished_at END"
)

RULE_0005 = "length(VALUE) BETWEEN 1 AND 255 AND btrim(VALUE) <> ''"
RULE_0006 = "length(VALUE) <= 255 AND btrim(VALUE) <> ''"

UPGRADE = f"""
CREATE INDEX jobs_state_time_idx ON {{schema}}.jobs (state, ({STATE_TIME}))
    WHERE state <> 'available';
COMMENT ON INDEX {{schema}}.jobs_state_time_idx IS
    'pgjobs: jobs that are not available, by state and by when the scheduled are due, '
    'the running lose their lease, the finished finished';
"""

# Last, because dropping an index locks its table against readers until the commit.
UPGRADE_DROPS = """
DROP INDEX {schema}.jobs_scheduled_idx;
DROP INDEX {schema}.jobs_running_idx;
DROP INDEX {schema}.jobs_finished_idx;
"""

DOWNGRADE = """
-- As 0001 and 0004 built them.
CREATE INDEX jobs_scheduled_idx ON {schema}.jobs (run_at) WHERE state = 'scheduled';
CREATE INDEX jobs_running_idx ON {schema}.jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_finished_idx ON {schema}.jobs (state, finished_at)
    WHERE state IN ('completed', 'failed', 'cancelled');
"""

DOWNGRADE_DROPS = """
DROP INDEX {schema}.jobs_state_time_idx;
"""


# purge_finished() as 0002 defines it, but picking its rows along jobs_state_time_idx.
# Derived from 0002's text rather than copied, so the two cannot drift apart; the
# downgrade restores 0002's own.
PURGE_PICK_0002 = "WHERE j.state = ANY (states) AND j.finished_at < now() - older_than\n"
PURGE_PICK_0006 = f"WHERE j.state = ANY (states)\n          AND {STATE_TIME} < now() - older_than\n"


def _purge_finished_0002() -> str:
    """0002's CREATE FUNCTION purge_finished(...), read from 0002 itself."""
    body = upgrade_statements(
        "0002_operations.py", "CREATE FUNCTION {schema}.purge_finished(", "\n$$;"
    )
    return body.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def _purge_finished_0006() -> str:
    body = _purge_finished_0002()
    if body.count(PURGE_PICK_0002) != 1:
        raise RuntimeError("0006: purge_finished() in 0002 is not shaped as expected")
    return body.replace(PURGE_PICK_0002, PURGE_PICK_0006)


def _rules_sql(rule: str) -> str:
    return "\n".join(
        f"ALTER DOMAIN {{schema}}.job_{column} DROP CONSTRAINT job_{column}_check;\n"
        f"ALTER DOMAIN {{schema}}.job_{column} ADD CONSTRAINT job_{column}_check CHECK ({rule});"
        for column in ("kind", "queue")
    )


def upgrade() -> None:
    run_sql("\n".join([UPGRADE, _purge_finished_0006(), _rules_sql(RULE_0006), UPGRADE_DROPS]))


def downgrade() -> None:
    run_sql("\n".join([DOWNGRADE, _purge_finished_0002(), _rules_sql(RULE_0005), DOWNGRADE_DROPS]))
