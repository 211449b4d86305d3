-- What operators run: the statements behind pgjobs.admin and the CLI's status, jobs,
-- retry, cancel, pause, resume, why, doctor, purge and grants commands.
--
-- The logic lives in the views and functions of migrations/schema.sql (documented in
-- docs/sql-reference.md), so psql users and the CLI get the same answers; these
-- statements only call them. {schema} is substituted at load (see pgjobs/_queries.py);
-- everything else is a bound parameter.
--
-- The functions acting on one job raise no_data_found (SQLSTATE P0002) for an unknown
-- id; pgjobs.admin turns that into JobNotFoundError.

-- name: queue_summary
select queue, paused, paused_at, scheduled, available, running, completed, failed, cancelled,
       oldest_ready_age, completed_last_minute, failed_last_minute, retried_last_minute,
       workers, concurrency
from {schema}.queue_summary;

-- name: worker_list_live
-- The weights are the table's (a column the view, older, does not have).
select lw.id, lw.host, lw.pid, lw.queues, lw.concurrency, lw.version, lw.started_at,
       lw.heartbeat_at, lw.waiting, lw.running,
       (select w.weights from {schema}.workers w where w.id = lw.id) as weights
from {schema}.live_workers lw
order by lw.started_at, lw.id;

-- name: job_list
-- One page of jobs, newest first, after the keyset *before* (the last id of the
-- previous page; null for the first): it walks the primary key backwards, so page 1,000
-- costs what page 1 does (skipping rows would read them all). Each filter is optional;
-- *error* is a case-insensitive substring of the last error (strpos: LIKE wildcards are
-- plain text); *since* a lower bound on created_at. Times through job_time(), as in
-- job_get (jobs.sql), so a row whose time Python cannot hold still lists.
select id, queue, kind, state::text as state, priority, attempt, max_retry,
       {schema}.job_time(run_at) as run_at, {schema}.job_time(created_at) as created_at,
       {schema}.job_time(started_at) as started_at,
       {schema}.job_time(finished_at) as finished_at, worker_id, last_error
from {schema}.jobs
where (%(state)s::text is null or state = %(state)s::{schema}.job_state)
  and (%(queue)s::text is null or queue = %(queue)s)
  and (%(kind)s::text is null or kind = %(kind)s)
  and (%(error)s::text is null or strpos(lower(last_error), lower(%(error)s)) > 0)
  and (%(since)s::timestamptz is null or created_at >= %(since)s)
  and (%(before)s::bigint is null or id < %(before)s)
order by id desc
limit %(limit)s;

-- name: job_retry
select {schema}.retry_job(%(id)s);

-- name: job_retry_failed
select {schema}.retry_failed(%(kind)s, %(queue)s);

-- name: job_cancel
select {schema}.cancel_job(%(id)s, %(reason)s);

-- name: job_why
select {schema}.why(%(id)s);

-- name: job_id_issued
-- Whether the job exists, and the highest id handed out so far: ids come from
-- jobs_id_seq and are never reused, so a missing id at or below it belonged to a job
-- that was deleted (or whose enqueue rolled back). pg_sequences shows last_value only
-- to roles that may read the sequence; the highest id in the table stands in for the
-- others. Last, whether this is a standby, which cannot read completed_recently.
select exists (select from {schema}.jobs where id = %(id)s),
       greatest((select s.last_value from pg_sequences s
                 where s.schemaname = '{schema}' and s.sequencename = 'jobs_id_seq'),
                (select max(id) from {schema}.jobs)),
       pg_is_in_recovery();

-- name: job_why_completed
-- why() of a deleted job that completed within the hour (see completed_recently), or no
-- row. Never on a standby: a statement naming an unlogged table fails there as planned.
select {schema}.why(%(id)s)
from {schema}.completed_recently r
where %(id)s::int8 = any (r.ids)
limit 1;

-- name: job_purge_finished
select {schema}.purge_finished(make_interval(secs => %(older_than)s), %(max_rows)s,
                               %(states)s::{schema}.job_state[]);

-- name: job_count_finished
-- What job_purge_finished would delete, for --dry-run. The CASE is jobs_state_time_idx's
-- (see job_stage_due in jobs.sql): for a finished job, its finished_at.
select count(*)
from {schema}.jobs
where state = any (%(states)s::{schema}.job_state[])
  and case state when 'scheduled' then run_at when 'running' then lease_expires_at
                 else finished_at end < now() - make_interval(secs => %(older_than)s);

-- name: queue_pause
select {schema}.pause_queue(%(queue)s, %(force)s);

-- name: queue_resume
select {schema}.resume_queue(%(queue)s);

-- name: doctor_run
select check_name, status, detail
from {schema}.doctor(make_interval(secs => %(long_transaction)s));

-- name: doctor_vacuum_blockers
select kind, pid, database, username, name, state, xact_start, query_start, xact_duration,
       xmin_age, query
from {schema}.vacuum_blockers
limit %(limit)s;

-- name: roles_grant
select stmt
from {schema}.grant_roles(%(enqueuer)s, %(worker)s, %(reader)s, %(create_missing)s) as g(stmt);
