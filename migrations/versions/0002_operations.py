"""Operations: inspection views, operator functions, enqueue from SQL, why, doctor, roles.

Everything an operator needs from ``psql`` lives here as database objects, and the
command line (``pgjobs status``, ``why``, ``doctor`` ...) only calls them, so both faces
give the same answers. docs/sql-reference.md lists every object with an example.

Conventions:
  * a worker is *live* while its heartbeat is younger than 60 seconds (workers beat
    about every 15 s), see ``worker_live_after()``;
  * functions acting on one job raise ``no_data_found`` (SQLSTATE P0002) for an unknown
    id, and return false when the job's state does not allow the action, so that they
    can be applied to many rows in one statement;
  * only ``enqueue`` is SECURITY DEFINER (so an enqueue-only role needs no access to
    the tables); every other function runs with the caller's privileges.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from pgjobs.migrate import run_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- ----------------------------------------------------------------------------------
-- Small helpers
-- ----------------------------------------------------------------------------------

CREATE FUNCTION {schema}.worker_live_after() RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
RETURN now() - interval '60 seconds';

COMMENT ON FUNCTION {schema}.worker_live_after() IS
    'pgjobs: workers whose heartbeat is older than this are not live (heartbeat every ~15 s)';

CREATE FUNCTION {schema}.format_duration(d interval) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    s numeric := extract(epoch FROM d);
BEGIN
    IF d IS NULL THEN
        RETURN NULL;
    ELSIF s < 0 THEN
        RETURN '-' || {schema}.format_duration(-d);
    ELSIF s < 1 THEN
        RETURN round(s * 1000) || ' ms';
    ELSIF s < 10 THEN
        RETURN round(s, 1) || ' s';
    ELSIF s < 60 THEN
        RETURN floor(s) || ' s';
    ELSIF s < 3600 THEN
        RETURN floor(s / 60) || ' min ' || floor(mod(s, 60)) || ' s';
    ELSIF s < 86400 THEN
        RETURN floor(s / 3600) || ' h ' || floor(mod(s, 3600) / 60) || ' min';
    END IF;
    RETURN floor(s / 86400) || ' d ' || floor(mod(s, 86400) / 3600) || ' h';
END
$$;

COMMENT ON FUNCTION {schema}.format_duration(interval) IS
    'pgjobs: an interval in words for people, such as "3 min 12 s" or "2 d 4 h"';

-- Wake the workers waiting on this queue, exactly as job_insert does: only when one
-- is waiting (a NOTIFY serialises committing transactions, see pgjobs/sql/jobs.sql).
CREATE FUNCTION {schema}.wakeup(queue text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF EXISTS (SELECT FROM {schema}.workers w
               WHERE w.waiting AND wakeup.queue = ANY (w.queues)) THEN
        PERFORM pg_notify('{schema}_wakeup', wakeup.queue);
        RETURN true;
    END IF;
    RETURN false;
END
$$;

COMMENT ON FUNCTION {schema}.wakeup(text) IS
    'pgjobs: NOTIFY {schema}_wakeup for this queue if a waiting worker serves it';

-- A queue is known when a job, a worker or a queues row names it. Pausing a queue
-- nothing knows is refused (by default): it is far more often a typo than a plan.
CREATE FUNCTION {schema}.queue_known(queue text) RETURNS boolean
LANGUAGE sql STABLE
RETURN EXISTS (SELECT FROM {schema}.queues q WHERE q.name = queue_known.queue)
    OR EXISTS (SELECT FROM {schema}.workers w WHERE queue_known.queue = ANY (w.queues))
    OR EXISTS (SELECT FROM {schema}.jobs j WHERE j.queue = queue_known.queue);

COMMENT ON FUNCTION {schema}.queue_known(text) IS
    'pgjobs: true when a job, a worker or a queue setting names this queue';

-- ----------------------------------------------------------------------------------
-- Views
-- ----------------------------------------------------------------------------------

CREATE VIEW {schema}.live_workers AS
SELECT w.id, w.host, w.pid, w.queues, w.concurrency, w.version, w.started_at,
       w.heartbeat_at, now() - w.heartbeat_at AS heartbeat_age, w.waiting,
       (SELECT count(*) FROM {schema}.jobs j
        WHERE j.state = 'running' AND j.worker_id = w.id) AS running
FROM {schema}.workers w
WHERE w.heartbeat_at > {schema}.worker_live_after()
ORDER BY w.started_at, w.id;

COMMENT ON VIEW {schema}.live_workers IS
    'pgjobs: workers that sent a heartbeat in the last 60 seconds, with their running jobs';

-- Throughput over the last 60 seconds from the per-minute stats rows: the current
-- (partial) minute plus the part of the previous minute that is still inside the
-- window, assuming the previous minute's work was spread evenly over it.
CREATE VIEW {schema}.queue_summary AS
WITH counts AS (
    SELECT j.queue,
           count(*) FILTER (WHERE j.state = 'scheduled') AS scheduled,
           count(*) FILTER (WHERE j.state = 'available') AS available,
           count(*) FILTER (WHERE j.state = 'running') AS running,
           count(*) FILTER (WHERE j.state = 'completed') AS completed,
           count(*) FILTER (WHERE j.state = 'failed') AS failed,
           count(*) FILTER (WHERE j.state = 'cancelled') AS cancelled,
           min(j.run_at) FILTER (WHERE j.state = 'available'
                                    OR (j.state = 'scheduled' AND j.run_at <= now()))
               AS oldest_ready_at
    FROM {schema}.jobs j
    GROUP BY j.queue
),
served AS (
    SELECT q.queue, count(*) AS workers, sum(w.concurrency) AS concurrency
    FROM {schema}.workers w, unnest(w.queues) AS q(queue)
    WHERE w.heartbeat_at > {schema}.worker_live_after()
    GROUP BY q.queue
),
window_ AS (
    SELECT date_trunc('minute', now()) AS this_minute,
           1 - extract(epoch FROM now() - date_trunc('minute', now())) / 60 AS previous_share
),
rate AS (
    SELECT s.queue,
           round(sum(s.completed * CASE WHEN s.minute = w.this_minute THEN 1
                                        ELSE w.previous_share END))::bigint AS completed,
           round(sum(s.failed * CASE WHEN s.minute = w.this_minute THEN 1
                                     ELSE w.previous_share END))::bigint AS failed,
           round(sum(s.retried * CASE WHEN s.minute = w.this_minute THEN 1
                                      ELSE w.previous_share END))::bigint AS retried
    FROM {schema}.stats s, window_ w
    WHERE s.minute >= w.this_minute - interval '1 minute'
    GROUP BY s.queue
),
names AS (
    SELECT queue FROM counts
    UNION SELECT name FROM {schema}.queues
    UNION SELECT queue FROM served
    UNION SELECT queue FROM rate
)
SELECT n.queue,
       p.paused_at IS NOT NULL AS paused,
       p.paused_at,
       coalesce(c.scheduled, 0) AS scheduled,
       coalesce(c.available, 0) AS available,
       coalesce(c.running, 0) AS running,
       coalesce(c.completed, 0) AS completed,
       coalesce(c.failed, 0) AS failed,
       coalesce(c.cancelled, 0) AS cancelled,
       now() - c.oldest_ready_at AS oldest_ready_age,
       coalesce(r.completed, 0) AS completed_last_minute,
       coalesce(r.failed, 0) AS failed_last_minute,
       coalesce(r.retried, 0) AS retried_last_minute,
       coalesce(s.workers, 0) AS workers,
       coalesce(s.concurrency, 0) AS concurrency
FROM names n
LEFT JOIN counts c ON c.queue = n.queue
LEFT JOIN {schema}.queues p ON p.name = n.queue
LEFT JOIN served s ON s.queue = n.queue
LEFT JOIN rate r ON r.queue = n.queue
ORDER BY n.queue;

COMMENT ON VIEW {schema}.queue_summary IS
    'pgjobs: per queue, jobs by state, age of the oldest ready job, finished attempts '
    'in the last 60 s (failed includes cancelled), live workers serving it';

CREATE VIEW {schema}.running_jobs AS
SELECT j.id, j.queue, j.kind, j.priority, j.attempt, j.max_retry, j.worker_id,
       w.host AS worker_host, w.pid AS worker_pid,
       coalesce(w.heartbeat_at > {schema}.worker_live_after(), false) AS worker_live,
       j.started_at, now() - j.started_at AS running_for,
       j.started_at + j.timeout AS deadline,
       j.lease_expires_at, j.lease_expires_at < now() AS lease_expired
FROM {schema}.jobs j
LEFT JOIN {schema}.workers w ON w.id = j.worker_id
WHERE j.state = 'running'
ORDER BY j.started_at, j.id;

COMMENT ON VIEW {schema}.running_jobs IS
    'pgjobs: running jobs with their worker, attempt, start and lease';

CREATE VIEW {schema}.failed_jobs AS
SELECT j.id, j.queue, j.kind, j.attempt, j.max_retry, j.created_at, j.finished_at,
       j.last_error, j.errors
FROM {schema}.jobs j
WHERE j.state = 'failed'
ORDER BY j.finished_at DESC, j.id DESC;

COMMENT ON VIEW {schema}.failed_jobs IS
    'pgjobs: failed jobs, newest first, with their last error and the error of every attempt';

-- Who holds back the xmin horizon, so that vacuum cannot remove the rows the queue
-- deletes. Since PostgreSQL 14 a backend in another database does not hold back this
-- database's tables, so only this database's backends (and walsenders, which serve
-- hot_standby_feedback for the whole cluster) are listed, with replication slots and
-- prepared transactions. The caller's own backend is left out. Without superuser or
-- pg_read_all_stats, other users' backends show no xmin and are missed.
CREATE VIEW {schema}.vacuum_blockers AS
SELECT b.*
FROM (
    SELECT 'backend'::text AS kind,
           a.pid,
           a.datname::text AS database,
           a.usename::text AS username,
           a.application_name AS name,
           a.client_addr::text AS client,
           a.state,
           a.xact_start,
           a.query_start,
           now() - a.xact_start AS xact_duration,
           greatest(age(a.backend_xmin), age(a.backend_xid)) AS xmin_age,
           left(a.query, 300) AS query
    FROM pg_stat_activity a
    WHERE (a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL)
      AND a.pid <> pg_backend_pid()
      AND a.backend_type <> 'autovacuum worker'
      AND (a.datname = current_database() OR a.backend_type = 'walsender')
    UNION ALL
    SELECT 'replication slot', s.active_pid, s.database::text, NULL, s.slot_name::text, NULL,
           CASE WHEN s.active THEN 'active' ELSE 'inactive' END,
           NULL, NULL, NULL,
           greatest(age(s.xmin), age(s.catalog_xmin)), NULL
    FROM pg_replication_slots s
    WHERE s.xmin IS NOT NULL OR s.catalog_xmin IS NOT NULL
    UNION ALL
    SELECT 'prepared transaction', NULL, p.database::text, p.owner::text, p.gid, NULL,
           'prepared', p.prepared, NULL, now() - p.prepared, age(p.transaction), NULL
    FROM pg_prepared_xacts p
    WHERE p.database = current_database()
) b
ORDER BY b.xmin_age DESC NULLS LAST;

COMMENT ON VIEW {schema}.vacuum_blockers IS
    'pgjobs: transactions, replication slots and prepared transactions holding back vacuum';

-- ----------------------------------------------------------------------------------
-- Enqueue from SQL
-- ----------------------------------------------------------------------------------

-- The same options, defaults and validation as pgjobs.Task (pgjobs/task.py) and the
-- same insert and wakeup as job_insert (pgjobs/sql/jobs.sql). SECURITY DEFINER with a
-- fixed search_path, so a role with only EXECUTE on it can enqueue without reading or
-- writing the tables itself.
CREATE FUNCTION {schema}.enqueue(
    kind text,
    payload jsonb DEFAULT '{}',
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    max_retry integer DEFAULT 25,
    timeout interval DEFAULT '30 minutes',
    run_at timestamptz DEFAULT NULL,
    delay interval DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    whitespace constant text := E' \t\n\r\f\v';
    max_name constant integer := 255;
    max_payload constant integer := 1048576;
    max_max_retry constant integer := 2147483646;  -- attempt counts to max_retry + 1
    max_seconds constant numeric := 3155760000;  -- 100 years, as pgjobs.task.MAX_SECONDS
    due timestamptz;
    payload_bytes integer;
    new_id bigint;
    new_state {schema}.job_state;
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

    due := coalesce(enqueue.run_at, now() + coalesce(enqueue.delay, interval '0'));
    INSERT INTO {schema}.jobs AS j
        (queue, kind, payload, priority, max_retry, timeout, run_at, state)
    VALUES (enqueue.queue, enqueue.kind, enqueue.payload, enqueue.priority, enqueue.max_retry,
            enqueue.timeout, due,
            CASE WHEN due <= now() THEN 'available' ELSE 'scheduled' END::{schema}.job_state)
    RETURNING j.id, j.state INTO new_id, new_state;

    IF new_state = 'available' THEN
        PERFORM {schema}.wakeup(enqueue.queue);
    END IF;
    RETURN new_id;
END
$$;

COMMENT ON FUNCTION {schema}.enqueue(text, jsonb, text, integer, integer, interval,
                                     timestamptz, interval) IS
    'pgjobs: enqueue a job from SQL (a trigger, psql, any language); returns its id';

-- Only roles given EXECUTE (see grant_roles) may enqueue through the definer's rights.
REVOKE ALL ON FUNCTION {schema}.enqueue(text, jsonb, text, integer, integer, interval,
                                        timestamptz, interval) FROM PUBLIC;

-- ----------------------------------------------------------------------------------
-- Operator functions
-- ----------------------------------------------------------------------------------

CREATE FUNCTION {schema}.job_not_found(job_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'job % does not exist (never enqueued, or finished and deleted)', job_id
        USING ERRCODE = 'no_data_found',
              HINT = 'completed jobs are deleted unless kept, finished jobs by purge';
END
$$;

COMMENT ON FUNCTION {schema}.job_not_found(bigint) IS
    'pgjobs: raise the no_data_found error every operator function gives for an unknown job';

-- Make a failed, cancelled or scheduled job available now. A job that used up its
-- retries gets exactly one more attempt (max_retry is raised to its attempt count).
CREATE FUNCTION {schema}.retry_job(job_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    old_state {schema}.job_state;
    job_queue text;
BEGIN
    SELECT j.state, j.queue INTO old_state, job_queue
    FROM {schema}.jobs j WHERE j.id = job_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM {schema}.job_not_found(job_id);
    END IF;
    IF old_state NOT IN ('failed', 'cancelled', 'scheduled') THEN
        RETURN false;
    END IF;
    UPDATE {schema}.jobs j
    SET state = 'available', run_at = now(), finished_at = NULL, lease_expires_at = NULL,
        worker_id = NULL, max_retry = greatest(j.max_retry, j.attempt)
    WHERE j.id = job_id;
    PERFORM {schema}.wakeup(job_queue);
    RETURN true;
END
$$;

COMMENT ON FUNCTION {schema}.retry_job(bigint) IS
    'pgjobs: run a failed, cancelled or scheduled job now; false for other states';

CREATE FUNCTION {schema}.retry_failed(kind text DEFAULT NULL, queue text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    total bigint := 0;
    n bigint;
    q text;
BEGIN
    FOR q, n IN
        WITH retried AS (
            UPDATE {schema}.jobs j
            SET state = 'available', run_at = now(), finished_at = NULL,
                lease_expires_at = NULL, worker_id = NULL,
                max_retry = greatest(j.max_retry, j.attempt)
            WHERE j.state = 'failed'
              AND (retry_failed.kind IS NULL OR j.kind = retry_failed.kind)
              AND (retry_failed.queue IS NULL OR j.queue = retry_failed.queue)
            RETURNING j.queue
        )
        SELECT r.queue, count(*) FROM retried r GROUP BY r.queue
    LOOP
        total := total + n;
        PERFORM {schema}.wakeup(q);
    END LOOP;
    RETURN total;
END
$$;

COMMENT ON FUNCTION {schema}.retry_failed(text, text) IS
    'pgjobs: make every failed job (of a kind, of a queue) available now; returns how many';

-- Cancel a job that has not finished. A running job is cancelled cooperatively: its
-- row is finalised here, and its worker, listening on {schema}_control, cancels the
-- handler's context; the worker's own outcome is guarded by state = 'running', so it
-- cannot overwrite the cancel.
CREATE FUNCTION {schema}.cancel_job(job_id bigint, reason text DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    old_state {schema}.job_state;
BEGIN
    SELECT j.state INTO old_state FROM {schema}.jobs j WHERE j.id = job_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM {schema}.job_not_found(job_id);
    END IF;
    IF old_state NOT IN ('scheduled', 'available', 'running') THEN
        RETURN false;
    END IF;
    UPDATE {schema}.jobs j
    SET state = 'cancelled', finished_at = now(), lease_expires_at = NULL,
        last_error = coalesce(nullif(btrim(reason), ''), 'cancelled by operator')
    WHERE j.id = job_id;
    IF old_state = 'running' THEN
        PERFORM pg_notify('{schema}_control',
                          json_build_object('action', 'cancel', 'job_id', job_id)::text);
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION {schema}.cancel_job(bigint, text) IS
    'pgjobs: cancel a scheduled, available or running job; false if it already finished';

CREATE FUNCTION {schema}.pause_queue(queue text, force boolean DEFAULT false) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    was_paused timestamptz;
BEGIN
    IF pause_queue.queue IS NULL OR btrim(pause_queue.queue) = '' THEN
        RAISE EXCEPTION 'queue must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT force AND NOT {schema}.queue_known(pause_queue.queue) THEN
        RAISE EXCEPTION 'queue "%" is unknown: no job, worker or queue setting names it',
            pause_queue.queue
            USING ERRCODE = 'no_data_found',
                  HINT = 'check the name, or pass force => true to pause it before first use';
    END IF;
    SELECT q.paused_at INTO was_paused FROM {schema}.queues q
    WHERE q.name = pause_queue.queue FOR UPDATE;
    INSERT INTO {schema}.queues AS q (name, paused_at, updated_at)
    VALUES (pause_queue.queue, now(), now())
    ON CONFLICT (name) DO UPDATE
    SET paused_at = coalesce(q.paused_at, excluded.paused_at), updated_at = excluded.updated_at;
    RETURN was_paused IS NULL;
END
$$;

COMMENT ON FUNCTION {schema}.pause_queue(text, boolean) IS
    'pgjobs: stop workers claiming from a queue (at their next claim); false if already paused';

CREATE FUNCTION {schema}.resume_queue(queue text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    UPDATE {schema}.queues q SET paused_at = NULL, updated_at = now()
    WHERE q.name = resume_queue.queue AND q.paused_at IS NOT NULL;
    IF NOT FOUND THEN
        IF NOT {schema}.queue_known(resume_queue.queue) THEN
            RAISE EXCEPTION 'queue "%" is unknown: no job, worker or queue setting names it',
                resume_queue.queue USING ERRCODE = 'no_data_found';
        END IF;
        RETURN false;
    END IF;
    -- Workers asleep on LISTEN learn of the resumed queue at once.
    IF EXISTS (SELECT FROM {schema}.jobs j
               WHERE j.state = 'available' AND j.queue = resume_queue.queue) THEN
        PERFORM {schema}.wakeup(resume_queue.queue);
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION {schema}.resume_queue(text) IS
    'pgjobs: let workers claim from a paused queue again; false if it was not paused';

CREATE FUNCTION {schema}.purge_finished(
    older_than interval,
    max_rows integer DEFAULT NULL,
    states {schema}.job_state[] DEFAULT '{completed,failed,cancelled}'
) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    deleted bigint;
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'older_than must be 0 or more, not %', coalesce(older_than::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF states IS NULL OR cardinality(states) = 0
       OR NOT states <@ '{completed,failed,cancelled}'::{schema}.job_state[] THEN
        RAISE EXCEPTION 'states must be some of completed, failed, cancelled, not %', states
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH doomed AS (
        SELECT j.id FROM {schema}.jobs j
        WHERE j.state = ANY (states) AND j.finished_at < now() - older_than
        LIMIT max_rows
    ),
    gone AS (
        -- State and age are checked again on the row actually deleted: a job retried
        -- meanwhile is no longer finished and stays.
        DELETE FROM {schema}.jobs j USING doomed
        WHERE j.id = doomed.id AND j.state = ANY (states)
          AND j.finished_at < now() - older_than
        RETURNING 1
    )
    SELECT count(*) INTO deleted FROM gone;
    RETURN deleted;
END
$$;

COMMENT ON FUNCTION {schema}.purge_finished(interval, integer, {schema}.job_state[]) IS
    'pgjobs: delete finished jobs older than an interval (at most max_rows); returns how many';

-- ----------------------------------------------------------------------------------
-- Why isn't my job running?
-- ----------------------------------------------------------------------------------

CREATE FUNCTION {schema}.why(job_id bigint) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    j record;
    w record;
    label text;
    lines text[] := '{}';
    tries text;
    paused_since timestamptz;
    serving bigint;
    slots bigint;
    busy bigint;
    ahead bigint;
    queue_running bigint;
    live_total bigint;
    live_queues text;
    last_beat timestamptz;
BEGIN
    SELECT * INTO j FROM {schema}.jobs x WHERE x.id = job_id;
    IF NOT FOUND THEN
        PERFORM {schema}.job_not_found(job_id);
    END IF;
    label := format('job %s (%s, queue "%s")', j.id, j.kind, j.queue);
    tries := format('%s attempt%s of %s allowed', j.attempt,
                    CASE WHEN j.attempt = 1 THEN '' ELSE 's' END, j.max_retry + 1);

    IF j.state = 'completed' THEN
        RETURN format('%s completed at %s (%s ago), after %s.', label,
                      to_char(j.finished_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                      {schema}.format_duration(now() - j.finished_at), tries);
    ELSIF j.state = 'failed' THEN
        RETURN format(E'%s failed at %s (%s ago), after %s.\nLast error: %s\n'
                      'Run it again with: select %s.retry_job(%s);  or: pgjobs retry %s',
                      label, to_char(j.finished_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                      {schema}.format_duration(now() - j.finished_at), tries,
                      coalesce(j.last_error, '(none recorded)'), '{schema}', j.id, j.id);
    ELSIF j.state = 'cancelled' THEN
        RETURN format('%s was cancelled at %s (%s ago): %s.', label,
                      to_char(j.finished_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                      {schema}.format_duration(now() - j.finished_at),
                      coalesce(j.last_error, 'no reason given'));
    END IF;

    SELECT count(*) INTO live_total FROM {schema}.workers x
    WHERE x.heartbeat_at > {schema}.worker_live_after();

    IF j.state = 'running' THEN
        SELECT * INTO w FROM {schema}.workers x WHERE x.id = j.worker_id;
        IF FOUND THEN
            lines := lines || format('%s is running: started %s ago (at %s) on worker %s '
                                     '(host %s, pid %s); %s.', label,
                                     {schema}.format_duration(now() - j.started_at),
                                     to_char(j.started_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                                     j.worker_id, w.host, w.pid, tries);
            last_beat := w.heartbeat_at;
        ELSE
            lines := lines || format('%s is running: started %s ago (at %s) on worker %s, '
                                     'which is no longer registered; %s.', label,
                                     {schema}.format_duration(now() - j.started_at),
                                     to_char(j.started_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                                     j.worker_id, tries);
        END IF;
        IF j.lease_expires_at < now() THEN
            lines := lines || format('Its lease expired %s ago: its worker is presumed dead, '
                                     'and a live worker''s rescuer will retry it (or fail it '
                                     'when no retry is left).',
                                     {schema}.format_duration(now() - j.lease_expires_at));
            IF live_total = 0 THEN
                lines := lines || 'No worker is live to rescue it: start a worker.'::text;
            END IF;
        ELSIF last_beat IS NULL OR last_beat <= {schema}.worker_live_after() THEN
            lines := lines || format('Its worker has not sent a heartbeat for %s; if the worker '
                                     'is gone, the job is rescued when its lease expires at %s '
                                     '(in %s).',
                                     coalesce({schema}.format_duration(now() - last_beat), 'long'),
                                     to_char(j.lease_expires_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                                     {schema}.format_duration(j.lease_expires_at - now()));
        ELSE
            lines := lines || format('Its timeout is %s (deadline %s); its lease runs until %s.',
                                     {schema}.format_duration(j.timeout),
                                     to_char(j.started_at + j.timeout, 'YYYY-MM-DD HH24:MI:SS TZ'),
                                     to_char(j.lease_expires_at, 'YYYY-MM-DD HH24:MI:SS TZ'));
        END IF;
        RETURN array_to_string(lines, E'\n');
    END IF;

    -- Scheduled or available: what stands between the job and a worker?
    IF j.state = 'scheduled' THEN
        IF j.run_at > now() AND j.attempt > 0 THEN
            lines := lines || format('%s is waiting to be retried: attempt %s failed, and '
                                     'attempt %s of %s is scheduled for %s (in %s).',
                                     label, j.attempt, j.attempt + 1, j.max_retry + 1,
                                     to_char(j.run_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                                     {schema}.format_duration(j.run_at - now()));
            lines := lines || format('Last error: %s', coalesce(j.last_error, '(none recorded)'));
        ELSIF j.run_at > now() THEN
            lines := lines || format('%s is scheduled to run at %s (in %s).', label,
                                     to_char(j.run_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                                     {schema}.format_duration(j.run_at - now()));
        ELSE
            lines := lines || format('%s was due at %s (%s ago) but has not been made available '
                                     'yet: a live worker''s maintenance pass does that.', label,
                                     to_char(j.run_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                                     {schema}.format_duration(now() - j.run_at));
        END IF;
    ELSE
        lines := lines || format('%s is ready to run since %s (%s ago) but not running yet.',
                                 label, to_char(j.run_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                                 {schema}.format_duration(now() - j.run_at));
    END IF;

    SELECT q.paused_at INTO paused_since FROM {schema}.queues q
    WHERE q.name = j.queue AND q.paused_at IS NOT NULL;
    IF paused_since IS NOT NULL THEN
        lines := lines || format('Its queue "%s" is paused (since %s, %s ago): no worker claims '
                                 'from it until it is resumed (select %s.resume_queue(%L); '
                                 'or: pgjobs resume %s).', j.queue,
                                 to_char(paused_since, 'YYYY-MM-DD HH24:MI:SS TZ'),
                                 {schema}.format_duration(now() - paused_since),
                                 '{schema}', j.queue, j.queue);
    END IF;

    SELECT count(*), coalesce(sum(x.concurrency), 0),
           coalesce(sum((SELECT count(*) FROM {schema}.jobs r
                         WHERE r.state = 'running' AND r.worker_id = x.id)), 0)
    INTO serving, slots, busy
    FROM {schema}.workers x
    WHERE x.heartbeat_at > {schema}.worker_live_after() AND j.queue = ANY (x.queues);

    IF serving = 0 THEN
        IF live_total = 0 THEN
            SELECT max(x.heartbeat_at) INTO last_beat FROM {schema}.workers x;
            lines := lines || CASE WHEN last_beat IS NULL
                THEN 'No worker is running: none has registered. Start one (pgjobs worker).'
                ELSE format('No worker is running: the last heartbeat was %s ago. '
                            'Start one (pgjobs worker).',
                            {schema}.format_duration(now() - last_beat)) END;
        ELSE
            SELECT string_agg(DISTINCT '"' || q || '"', ', ' ORDER BY '"' || q || '"')
            INTO live_queues
            FROM {schema}.workers x, unnest(x.queues) AS q
            WHERE x.heartbeat_at > {schema}.worker_live_after();
            lines := lines || format('No live worker serves queue "%s": the %s live worker%s '
                                     'serve%s %s.', j.queue, live_total,
                                     CASE WHEN live_total = 1 THEN '' ELSE 's' END,
                                     CASE WHEN live_total = 1 THEN 's' ELSE '' END, live_queues);
        END IF;
    END IF;

    IF j.state = 'available' THEN
        SELECT count(*) INTO ahead FROM {schema}.jobs x
        WHERE x.state = 'available' AND x.queue = j.queue
          AND (x.priority, x.id) < (j.priority, j.id);
        SELECT count(*) INTO queue_running FROM {schema}.jobs x
        WHERE x.state = 'running' AND x.queue = j.queue;
        IF ahead > 0 THEN
            lines := lines || format('It is waiting behind %s job%s ahead of it in queue "%s" '
                                     '(higher priority, or the same priority and older); '
                                     '%s job%s of that queue %s running.',
                                     ahead, CASE WHEN ahead = 1 THEN '' ELSE 's' END, j.queue,
                                     queue_running,
                                     CASE WHEN queue_running = 1 THEN '' ELSE 's' END,
                                     CASE WHEN queue_running = 1 THEN 'is' ELSE 'are' END);
        ELSE
            lines := lines || format('It is next in line in queue "%s".', j.queue);
        END IF;
        IF serving > 0 THEN
            IF busy >= slots THEN
                lines := lines || format('All %s slots of the %s live worker%s serving the queue '
                                         'are busy.', slots, serving,
                                         CASE WHEN serving = 1 THEN '' ELSE 's' END);
            ELSIF paused_since IS NULL THEN
                lines := lines || format('%s live worker%s serving the queue %s %s free slot%s '
                                         'of %s: it should be claimed within moments.',
                                         serving, CASE WHEN serving = 1 THEN '' ELSE 's' END,
                                         CASE WHEN serving = 1 THEN 'has' ELSE 'have' END,
                                         slots - busy,
                                         CASE WHEN slots - busy = 1 THEN '' ELSE 's' END,
                                         slots);
            END IF;
        END IF;
    END IF;
    RETURN array_to_string(lines, E'\n');
END
$$;

COMMENT ON FUNCTION {schema}.why(bigint) IS
    'pgjobs: in words, why a job is or is not running';

-- ----------------------------------------------------------------------------------
-- Doctor
-- ----------------------------------------------------------------------------------

-- What degrades a Postgres queue, one row per finding: status 'ok', 'info' or 'warn'.
CREATE FUNCTION {schema}.doctor(long_transaction interval DEFAULT '5 minutes')
RETURNS TABLE (check_name text, status text, detail text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    b record;
    t record;
    o record;
    n bigint;
    oldest timestamptz;
    found_any boolean;
    setting text;
BEGIN
    -- 1. Transactions, slots and prepared transactions that hold back vacuum.
    found_any := false;
    FOR b IN
        SELECT * FROM {schema}.vacuum_blockers v
        WHERE (v.kind = 'backend' AND v.xact_duration >= long_transaction)
           OR (v.kind = 'prepared transaction' AND v.xact_duration >= long_transaction)
           OR (v.kind = 'replication slot' AND v.state = 'inactive')
        LIMIT 10
    LOOP
        found_any := true;
        check_name := 'vacuum horizon';
        status := 'warn';
        detail := CASE b.kind
            WHEN 'backend' THEN format(
                'pid %s (user %s, application "%s", %s) has had a transaction open for %s, '
                'since %s (xmin age %s): vacuum cannot remove rows deleted since then. '
                'Query started %s: %s',
                b.pid, b.username, b.name, b.state,
                {schema}.format_duration(b.xact_duration),
                to_char(b.xact_start, 'YYYY-MM-DD HH24:MI:SS TZ'), b.xmin_age,
                coalesce(to_char(b.query_start, 'YYYY-MM-DD HH24:MI:SS TZ'), '?'),
                coalesce(regexp_replace(b.query, '\s+', ' ', 'g'), '?'))
            WHEN 'prepared transaction' THEN format(
                'prepared transaction "%s" (owner %s) has been waiting for COMMIT/ROLLBACK '
                'PREPARED for %s (xmin age %s)', b.name, b.username,
                {schema}.format_duration(b.xact_duration), b.xmin_age)
            ELSE format(
                'inactive replication slot "%s" holds back vacuum (xmin age %s) and WAL: '
                'drop it if its consumer is gone (select pg_drop_replication_slot(%L))',
                b.name, b.xmin_age, b.name)
            END;
        RETURN NEXT;
    END LOOP;
    IF NOT found_any THEN
        SELECT * INTO b FROM {schema}.vacuum_blockers v
        WHERE v.kind = 'backend' ORDER BY v.xact_duration DESC NULLS LAST LIMIT 1;
        check_name := 'vacuum horizon';
        status := 'ok';
        detail := format('no transaction has held back vacuum for %s or more',
                          {schema}.format_duration(long_transaction))
                  || CASE WHEN b.pid IS NULL THEN ''
                          ELSE format(' (oldest: pid %s, %s)', b.pid,
                                      {schema}.format_duration(b.xact_duration)) END;
        RETURN NEXT;
    END IF;

    -- 2. Dead rows in the jobs table.
    SELECT s.n_live_tup, s.n_dead_tup, greatest(s.last_autovacuum, s.last_vacuum) AS vacuumed,
           pg_total_relation_size(s.relid) AS bytes
    INTO t
    FROM pg_stat_user_tables s WHERE s.relid = '{schema}.jobs'::regclass;
    check_name := 'dead rows';
    status := CASE WHEN t.n_dead_tup >= 10000 AND t.n_dead_tup > 0.2 * t.n_live_tup
                   THEN 'warn' ELSE 'ok' END;
    detail := format('{schema}.jobs has %s dead and %s live rows (%s); last vacuum: %s',
                     t.n_dead_tup, t.n_live_tup, pg_size_pretty(t.bytes),
                     coalesce({schema}.format_duration(now() - t.vacuumed) || ' ago', 'never'))
              || CASE WHEN status = 'warn'
                      THEN '. Vacuum is falling behind: see the vacuum horizon and autovacuum '
                           'checks' ELSE '' END;
    RETURN NEXT;

    -- 3. Jobs stuck past their lease, and overdue scheduled jobs.
    SELECT count(*), min(x.lease_expires_at) INTO n, oldest
    FROM {schema}.jobs x WHERE x.state = 'running' AND x.lease_expires_at < now();
    check_name := 'stuck jobs';
    IF n > 0 AND oldest < now() - interval '1 minute' THEN
        status := 'warn';
        detail := format('%s running job%s past %s lease (the oldest by %s): no live worker has '
                         'rescued them; is any worker running?', n,
                         CASE WHEN n = 1 THEN ' is' ELSE 's are' END,
                         CASE WHEN n = 1 THEN 'its' ELSE 'their' END,
                         {schema}.format_duration(now() - oldest));
    ELSE
        SELECT count(*) INTO n FROM {schema}.jobs x WHERE x.state = 'running';
        status := 'ok';
        detail := format('%s running job%s, none long past its lease', n,
                         CASE WHEN n = 1 THEN '' ELSE 's' END);
    END IF;
    RETURN NEXT;

    SELECT count(*), min(x.run_at) INTO n, oldest
    FROM {schema}.jobs x WHERE x.state = 'scheduled' AND x.run_at < now() - interval '1 minute';
    IF n > 0 THEN
        check_name := 'overdue jobs';
        status := 'warn';
        detail := format('%s scheduled job%s overdue (the oldest by %s): due jobs are made '
                         'available by a live worker''s maintenance pass', n,
                         CASE WHEN n = 1 THEN ' is' ELSE 's are' END,
                         {schema}.format_duration(now() - oldest));
        RETURN NEXT;
    END IF;

    -- 4. Queues with work that nobody serves, and paused queues.
    FOR o IN
        SELECT s.queue, s.paused, s.paused_at, s.available, s.workers, s.oldest_ready_age
        FROM {schema}.queue_summary s
        WHERE s.paused OR (s.available > 0 AND s.workers = 0)
    LOOP
        check_name := 'queues';
        IF o.paused THEN
            status := 'info';
            detail := format('queue "%s" is paused since %s (%s ago), %s job%s ready', o.queue,
                             to_char(o.paused_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                             {schema}.format_duration(now() - o.paused_at), o.available,
                             CASE WHEN o.available = 1 THEN '' ELSE 's' END);
        ELSE
            status := 'warn';
            detail := format('queue "%s" has %s job%s ready (the oldest for %s) and no live '
                             'worker serves it', o.queue, o.available,
                             CASE WHEN o.available = 1 THEN '' ELSE 's' END,
                             {schema}.format_duration(o.oldest_ready_age));
        END IF;
        RETURN NEXT;
    END LOOP;

    -- 5. Autovacuum: on, and tuned for the jobs table as migration 0001 sets it.
    FOREACH setting IN ARRAY ARRAY['autovacuum', 'track_counts'] LOOP
        IF current_setting(setting) <> 'on' THEN
            check_name := 'autovacuum';
            status := 'warn';
            detail := format('%s is off in the server configuration: dead rows of the queue '
                             'are never vacuumed automatically', setting);
            RETURN NEXT;
        END IF;
    END LOOP;
    found_any := false;
    FOR o IN
        WITH recommended(name, value) AS (
            VALUES ('autovacuum_enabled', 'true'),
                   ('autovacuum_vacuum_scale_factor', '0.01'),
                   ('autovacuum_vacuum_insert_scale_factor', '0.01'),
                   ('autovacuum_analyze_scale_factor', '0.02'),
                   ('autovacuum_vacuum_cost_delay', '0')
        ),
        actual AS (
            SELECT opt.option_name AS name, opt.option_value AS value
            FROM pg_class c, pg_options_to_table(c.reloptions) opt
            WHERE c.oid = '{schema}.jobs'::regclass
        )
        SELECT r.name, r.value AS recommended, a.value AS actual
        FROM recommended r LEFT JOIN actual a ON a.name = r.name
        WHERE CASE WHEN r.name = 'autovacuum_enabled'
                   THEN a.value IS NOT NULL AND a.value::boolean IS DISTINCT FROM true
                   ELSE a.value IS NULL OR a.value::numeric <> r.value::numeric END
    LOOP
        found_any := true;
        check_name := 'autovacuum';
        status := 'warn';
        detail := format('{schema}.jobs has %s = %s, pgjobs recommends %s: '
                         'ALTER TABLE {schema}.jobs SET (%s = %s)',
                         o.name, coalesce(o.actual, format('unset (server default %s)',
                                                    current_setting(o.name, true))),
                         o.recommended, o.name, o.recommended);
        RETURN NEXT;
    END LOOP;
    IF NOT found_any THEN
        check_name := 'autovacuum';
        status := 'ok';
        detail := '{schema}.jobs has the recommended autovacuum settings';
        RETURN NEXT;
    END IF;
END
$$;

COMMENT ON FUNCTION {schema}.doctor(interval) IS
    'pgjobs: what degrades the queue (vacuum held back, dead rows, stuck jobs, settings)';

-- ----------------------------------------------------------------------------------
-- Least privilege
-- ----------------------------------------------------------------------------------

-- Three roles, created NOLOGIN when missing (needs CREATEROLE) and granted what they
-- need; grant them to login roles (GRANT {schema}_worker TO app_worker). Run again
-- after upgrading pgjobs: it is idempotent. Returns the statements it ran.
CREATE FUNCTION {schema}.grant_roles(
    enqueuer text DEFAULT '{schema}_enqueuer',
    worker text DEFAULT '{schema}_worker',
    reader text DEFAULT '{schema}_reader',
    create_missing boolean DEFAULT true
) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r text;
    t text;
    stmt text;
BEGIN
    IF enqueuer IS NULL OR worker IS NULL OR reader IS NULL THEN
        RAISE EXCEPTION 'role names must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF create_missing THEN
        FOREACH r IN ARRAY ARRAY[enqueuer, worker, reader] LOOP
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
                stmt := format('CREATE ROLE %I NOLOGIN', r);
                BEGIN
                    EXECUTE stmt;
                    RETURN NEXT stmt;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN
                    NULL;  -- created concurrently: fine
                END;
            END IF;
        END LOOP;
    END IF;
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT USAGE ON SCHEMA {schema} TO %I, %I, %I', enqueuer, worker, reader),
        -- enqueue-only: the function, or a plain INSERT (pgjobs.enqueue() in Python). It
        -- sees ids, queues and states (for INSERT ... RETURNING), never kinds or payloads.
        format('GRANT EXECUTE ON FUNCTION {schema}.enqueue(text, jsonb, text, integer, integer, '
               'interval, timestamptz, interval) TO %I, %I', enqueuer, worker),
        -- (id and the sequence: bulk enqueue reserves ids with nextval, then COPYs rows.)
        format('GRANT INSERT (id, queue, kind, payload, priority, max_retry, timeout, run_at, '
               'state) ON {schema}.jobs TO %I', enqueuer),
        format('GRANT USAGE ON SEQUENCE {schema}.jobs_id_seq TO %I, %I', enqueuer, worker),
        format('GRANT SELECT (id, queue, state) ON {schema}.jobs TO %I', enqueuer),
        format('GRANT SELECT (queues, waiting) ON {schema}.workers TO %I', enqueuer),
        -- worker and reader: read everything (tables, views, the schema version).
        format('GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO %I, %I', worker, reader),
        format('GRANT EXECUTE ON FUNCTION {schema}.why(bigint), {schema}.doctor(interval), '
               '{schema}.format_duration(interval), {schema}.worker_live_after() TO %I, %I',
               worker, reader)
    ] LOOP
        EXECUTE stmt;
        RETURN NEXT stmt;
    END LOOP;
    -- worker: claims and finishes jobs, registers itself, counts throughput; it may write
    -- every table (later migrations' too) but the queue settings and the schema version.
    FOR t IN
        SELECT c.relname FROM pg_class c
        WHERE c.relnamespace = '{schema}'::regnamespace AND c.relkind IN ('r', 'p')
          AND c.relname NOT IN ('queues', 'pgjobs_version')
        ORDER BY c.relname
    LOOP
        stmt := format('GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.%I TO %I', t, worker);
        EXECUTE stmt;
        RETURN NEXT stmt;
    END LOOP;
END
$$;

COMMENT ON FUNCTION {schema}.grant_roles(text, text, text, boolean) IS
    'pgjobs: create (if missing) and grant the enqueuer, worker and reader roles';
"""

DOWNGRADE = """
DROP FUNCTION {schema}.grant_roles(text, text, text, boolean);
DROP FUNCTION {schema}.doctor(interval);
DROP FUNCTION {schema}.why(bigint);
DROP FUNCTION {schema}.purge_finished(interval, integer, {schema}.job_state[]);
DROP FUNCTION {schema}.resume_queue(text);
DROP FUNCTION {schema}.pause_queue(text, boolean);
DROP FUNCTION {schema}.cancel_job(bigint, text);
DROP FUNCTION {schema}.retry_failed(text, text);
DROP FUNCTION {schema}.retry_job(bigint);
DROP FUNCTION {schema}.job_not_found(bigint);
DROP FUNCTION {schema}.enqueue(text, jsonb, text, integer, integer, interval, timestamptz,
                               interval);
DROP VIEW {schema}.vacuum_blockers;
DROP VIEW {schema}.failed_jobs;
DROP VIEW {schema}.running_jobs;
DROP VIEW {schema}.queue_summary;
DROP VIEW {schema}.live_workers;
DROP FUNCTION {schema}.queue_known(text);
DROP FUNCTION {schema}.wakeup(text);
DROP FUNCTION {schema}.format_duration(interval);
DROP FUNCTION {schema}.worker_live_after();
"""


def upgrade() -> None:
    run_sql(UPGRADE)


def downgrade() -> None:
    run_sql(DOWNGRADE)
