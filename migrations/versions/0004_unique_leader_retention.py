"""Unique jobs, leader election, and the index that makes pruning finished jobs cheap.

* ``unique_keys``: one row per unique key in force. A key is claimed with one
  ``INSERT ... ON CONFLICT`` in the enqueuing transaction, so it is race-free under
  concurrent enqueues and disappears with a rolled-back enqueue. Its window
  (``expires_at``) is independent of how long the job's own row is kept; a key without
  ``expires_at`` is held until its job finishes.
* ``leader``: at most one live leader per name, elected and renewed by one conditional
  upsert (no session state, so it works through PgBouncer in transaction mode). The
  leader runs the periodic scheduler and the pruner.
* ``jobs_finished_idx``: finished jobs by state and age, for the pruner's batches.
* ``enqueue(...)`` gains ``unique_key`` and ``unique_for``; ``grant_roles`` grants the
  new tables, and the jobs id sequence that bulk and unique enqueues draw ids from.

The downgrade restores 0002's ``enqueue`` and ``grant_roles`` from 0002 itself.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import re

from pgjobs.migrate import run_sql, upgrade_statements

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ENQUEUE_ARGS = (
    "(text, jsonb, text, integer, integer, interval, timestamptz, interval, text, interval)"
)

UPGRADE = r"""
-- ----------------------------------------------------------------------------------
-- Unique keys
-- ----------------------------------------------------------------------------------

CREATE TABLE {schema}.unique_keys (
    key        text PRIMARY KEY,
    job_id     bigint NOT NULL,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT unique_keys_key_check CHECK (length(key) BETWEEN 1 AND 512)
);

-- The pruner deletes expired keys oldest first, in batches.
CREATE INDEX unique_keys_expires_at_idx ON {schema}.unique_keys (expires_at)
    WHERE expires_at IS NOT NULL;

COMMENT ON TABLE {schema}.unique_keys IS
    'pgjobs: unique keys in force; a job enqueued with a key held here is a duplicate';
COMMENT ON COLUMN {schema}.unique_keys.job_id IS
    'the job that holds the key (it may have finished and been deleted since)';
COMMENT ON COLUMN {schema}.unique_keys.expires_at IS
    'end of the uniqueness window; NULL: held until the job finishes';

-- ----------------------------------------------------------------------------------
-- Leader election
-- ----------------------------------------------------------------------------------

CREATE TABLE {schema}.leader (
    name       text PRIMARY KEY,
    worker_id  uuid NOT NULL,
    elected_at timestamptz NOT NULL DEFAULT now(),
    renewed_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

COMMENT ON TABLE {schema}.leader IS
    'pgjobs: the worker that runs periodic jobs and pruning, while expires_at is ahead';
COMMENT ON COLUMN {schema}.leader.renewed_at IS
    'the leader''s last renewal, or its resignation: a successor takes over from there';

-- ----------------------------------------------------------------------------------
-- Pruning
-- ----------------------------------------------------------------------------------

-- Finished jobs by state and age, so that each of the pruner's batches reads only the
-- rows it deletes. Partial: unfinished jobs never enter it, and completed jobs only
-- when they are retained.
CREATE INDEX jobs_finished_idx ON {schema}.jobs (state, finished_at)
    WHERE state IN ('completed', 'failed', 'cancelled');

-- ----------------------------------------------------------------------------------
-- enqueue() with unique keys
-- ----------------------------------------------------------------------------------

DROP FUNCTION {schema}.enqueue(text, jsonb, text, integer, integer, interval, timestamptz,
                               interval);

-- The same options, defaults and validation as pgjobs.Task (pgjobs/task.py), the same
-- insert and wakeup as job_insert (pgjobs/sql/jobs.sql), and the same unique-key claim
-- as job_insert_unique (pgjobs/sql/unique.sql). Returns the new job's id or, for a
-- duplicate, the id of the job that holds the key.
CREATE FUNCTION {schema}.enqueue(
    kind text,
    payload jsonb DEFAULT '{}',
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    max_retry integer DEFAULT 25,
    timeout interval DEFAULT '30 minutes',
    run_at timestamptz DEFAULT NULL,
    delay interval DEFAULT NULL,
    unique_key text DEFAULT NULL,
    unique_for interval DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    whitespace constant text := E' \t\n\r\f\v';
    max_name constant integer := 255;
    max_key constant integer := 512;
    max_payload constant integer := 1048576;
    max_max_retry constant integer := 2147483646;  -- attempt counts to max_retry + 1
    max_seconds constant numeric := 3155760000;  -- 100 years, as pgjobs.task.MAX_SECONDS
    due timestamptz;
    payload_bytes integer;
    new_id bigint;
    new_state {schema}.job_state;
    holder bigint;
    holder_expires timestamptz;
BEGIN
    IF enqueue.kind IS NULL OR btrim(enqueue.kind, whitespace) = '' THEN
        RAISE EXCEPTION 'pgjobs.enqueue: kind must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(enqueue.kind) > max_name THEN
        RAISE EXCEPTION 'pgjobs.enqueue: kind is % characters long, over the limit of %',
            length(enqueue.kind), max_name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.queue IS NULL OR btrim(enqueue.queue, whitespace) = '' THEN
        RAISE EXCEPTION 'pgjobs.enqueue: queue must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(enqueue.queue) > max_name THEN
        RAISE EXCEPTION 'pgjobs.enqueue: queue is % characters long, over the limit of %',
            length(enqueue.queue), max_name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.payload IS NULL THEN
        RAISE EXCEPTION 'pgjobs.enqueue: payload must not be NULL (use ''{}'' or ''null''::jsonb)'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    payload_bytes := octet_length(enqueue.payload::text);
    IF payload_bytes > max_payload THEN
        RAISE EXCEPTION 'pgjobs.enqueue: payload is % bytes as JSON, over the limit of % bytes',
            payload_bytes, max_payload USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF enqueue.priority IS NULL OR enqueue.priority NOT BETWEEN -32768 AND 32767 THEN
        RAISE EXCEPTION 'pgjobs.enqueue: priority must be between -32768 and 32767, not %',
            coalesce(enqueue.priority::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.max_retry IS NULL OR enqueue.max_retry NOT BETWEEN 0 AND max_max_retry THEN
        RAISE EXCEPTION 'pgjobs.enqueue: max_retry must be between 0 and %, not %',
            max_max_retry, coalesce(enqueue.max_retry::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.timeout IS NULL OR NOT enqueue.timeout > interval '0' THEN
        RAISE EXCEPTION 'pgjobs.enqueue: timeout must be more than 0 seconds, not %',
            coalesce(enqueue.timeout::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF extract(epoch FROM enqueue.timeout) > max_seconds THEN
        RAISE EXCEPTION 'pgjobs.enqueue: timeout must be at most % seconds (100 years)',
            max_seconds USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT isfinite(enqueue.run_at) THEN
        RAISE EXCEPTION 'pgjobs.enqueue: run_at must be a finite time, not %', enqueue.run_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.run_at IS NOT NULL AND enqueue.delay IS NOT NULL THEN
        RAISE EXCEPTION 'pgjobs.enqueue: give run_at or delay, not both'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.delay < interval '0' THEN
        RAISE EXCEPTION 'pgjobs.enqueue: delay must be 0 seconds or more, not %', enqueue.delay
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF extract(epoch FROM enqueue.delay) > max_seconds THEN
        RAISE EXCEPTION 'pgjobs.enqueue: delay must be at most % seconds (100 years)',
            max_seconds USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.unique_key IS NOT NULL AND btrim(enqueue.unique_key, whitespace) = '' THEN
        RAISE EXCEPTION 'pgjobs.enqueue: unique_key must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(enqueue.unique_key) > max_key THEN
        RAISE EXCEPTION 'pgjobs.enqueue: unique_key is % characters long, over the limit of %',
            length(enqueue.unique_key), max_key USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.unique_for IS NOT NULL AND enqueue.unique_key IS NULL THEN
        RAISE EXCEPTION 'pgjobs.enqueue: unique_for needs a unique_key'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT enqueue.unique_for > interval '0' THEN
        RAISE EXCEPTION 'pgjobs.enqueue: unique_for must be more than 0 seconds, not %',
            enqueue.unique_for USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF extract(epoch FROM enqueue.unique_for) > max_seconds THEN
        RAISE EXCEPTION 'pgjobs.enqueue: unique_for must be at most % seconds (100 years)',
            max_seconds USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF enqueue.unique_key IS NULL THEN
        new_id := nextval('{schema}.jobs_id_seq');
    ELSE
        -- Claim the key as job_insert_unique does. Each statement of this VOLATILE
        -- function takes a new snapshot, so after the claim has locked the key row the
        -- release below sees the holder's job as committed.
        LOOP
            new_id := nextval('{schema}.jobs_id_seq');
            INSERT INTO {schema}.unique_keys AS k (key, job_id, expires_at)
            VALUES (enqueue.unique_key, new_id, now() + enqueue.unique_for)
            ON CONFLICT (key) DO UPDATE
            SET job_id = CASE WHEN k.expires_at <= now() THEN excluded.job_id ELSE k.job_id END,
                created_at = CASE WHEN k.expires_at <= now() THEN now() ELSE k.created_at END,
                expires_at = CASE WHEN k.expires_at <= now() THEN excluded.expires_at
                                  ELSE k.expires_at END
            RETURNING k.job_id, k.expires_at INTO holder, holder_expires;
            EXIT WHEN holder = new_id;
            IF holder_expires IS NOT NULL THEN
                RETURN holder;  -- its window is still open
            END IF;
            DELETE FROM {schema}.unique_keys k
            WHERE k.key = enqueue.unique_key AND k.job_id = holder AND k.expires_at IS NULL
              AND NOT EXISTS (SELECT FROM {schema}.jobs j
                              WHERE j.id = holder
                                AND j.state IN ('scheduled', 'available', 'running'));
            IF NOT FOUND THEN
                RETURN holder;  -- its job has not finished
            END IF;
        END LOOP;
    END IF;

    due := coalesce(enqueue.run_at, now() + coalesce(enqueue.delay, interval '0'));
    INSERT INTO {schema}.jobs AS j
        (id, queue, kind, payload, priority, max_retry, timeout, run_at, state)
    VALUES (new_id, enqueue.queue, enqueue.kind, enqueue.payload, enqueue.priority,
            enqueue.max_retry, enqueue.timeout, due,
            CASE WHEN due <= now() THEN 'available' ELSE 'scheduled' END::{schema}.job_state)
    RETURNING j.state INTO new_state;

    IF new_state = 'available' THEN
        PERFORM {schema}.wakeup(enqueue.queue);
    END IF;
    RETURN new_id;
END
$$;

COMMENT ON FUNCTION {schema}.enqueue(text, jsonb, text, integer, integer, interval,
                                     timestamptz, interval, text, interval) IS
    'pgjobs: enqueue a job from SQL (a trigger, psql, any language); returns its id, or '
    'the id of the job holding its unique_key';

REVOKE ALL ON FUNCTION {schema}.enqueue(text, jsonb, text, integer, integer, interval,
                                        timestamptz, interval, text, interval) FROM PUBLIC;
"""

DOWNGRADE_HEAD = """
DROP FUNCTION {schema}.enqueue(text, jsonb, text, integer, integer, interval, timestamptz,
                               interval, text, interval);
DROP INDEX {schema}.jobs_finished_idx;
DROP TABLE {schema}.leader;
DROP TABLE {schema}.unique_keys;
"""


# grant_roles() as 0002 defines it, with this revision's enqueue() signature and the
# privileges the new tables need. Derived from 0002's text rather than copied, so the
# two cannot drift apart; tests/test_unique.py checks the result and the round trip.
GRANTS_0004 = """
    -- 0004: an enqueue with a unique_key claims (or takes over) a row in unique_keys;
    -- the leader worker elects itself in leader and prunes expired keys.
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.unique_keys TO %I, %I',
               enqueuer, worker),
        format('GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.leader TO %I', worker),
        format('GRANT USAGE ON SEQUENCE {schema}.jobs_id_seq TO %I, %I', enqueuer, worker)
    ] LOOP
        EXECUTE stmt;
        RETURN NEXT stmt;
    END LOOP;
END
$$;"""
_ENQUEUE_ARGS = re.compile(r"\{schema\}\.enqueue\([^)]*\)")
_BODY_END = re.compile(r"\nEND\s*\n\$\$;\s*$")


def _statements_0002(start: str, end: str) -> str:
    """The part of 0002's script from *start* to the end of the statement holding *end*."""
    return upgrade_statements("0002_operations.py", start, end)


def _grant_roles_0002() -> str:
    body = _statements_0002("CREATE FUNCTION {schema}.grant_roles(", "\n$$;")
    return body.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def _grant_roles_0004() -> str:
    body = _grant_roles_0002()
    body, granted = _ENQUEUE_ARGS.subn("{schema}.enqueue" + ENQUEUE_ARGS, body)
    body, ended = _BODY_END.subn(GRANTS_0004, body)
    if granted != 1 or ended != 1:
        raise RuntimeError("0004: grant_roles() in 0002 is not shaped as expected")
    return body


def upgrade() -> None:
    run_sql(UPGRADE + "\n" + _grant_roles_0004())


def downgrade() -> None:
    run_sql(DOWNGRADE_HEAD)
    enqueue = _statements_0002(
        "CREATE FUNCTION {schema}.enqueue(", "REVOKE ALL ON FUNCTION {schema}.enqueue("
    )
    run_sql(enqueue + "\n" + _grant_roles_0002())
