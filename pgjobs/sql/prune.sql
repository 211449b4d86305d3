-- The pruner (pgjobs/_worker/pruner.py, run by the leader only; with stats_prune in
-- stats.sql): deletes what is no longer needed, a batch of at most %(limit)s rows per
-- statement, so that no statement holds many row locks or runs long, and each commits
-- on its own. Each takes the time it treats as now as %(now)s (NULL: the server's clock;
-- see jobs.sql), and its durations as seconds.
--
-- Each batch picks its rows FOR UPDATE SKIP LOCKED (rows another transaction is
-- changing are left for the next pass) and deletes them by primary key: the picking
-- re-checks its conditions on the newest version of each row it locks, and a locked row
-- cannot change before the delete, so a job retried meanwhile is never deleted. As in
-- job_claim, the delete takes an id list rather than a join, whatever the planner's
-- stale estimates of the queue table say.

-- name: job_prune_finished
-- Jobs that finished in one state (completed, failed or cancelled) longer than
-- retention seconds ago, oldest first, along jobs_state_time_idx: the CASE is the
-- index's (see job_stage_due in jobs.sql), for a finished job its finished_at. A job a
-- client still waits for stays until it has read it (see job_finish_many); a client
-- that died waiting stops counting once waiter_prune_stale removed its row.
-- Completed jobs that finished less than recorded_for seconds ago (kept for a waiter, or
-- under a short retention) go to completed_recently, as job_finish_many's do, one row
-- per completing statement (they share its finished_at): why() can then say they completed.
with doomed as (
    select j.id
    from {schema}.jobs j
    where j.state = %(state)s::{schema}.job_state
      and case state when 'scheduled' then run_at when 'running' then lease_expires_at
                     else finished_at end
          < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(retention)s::float8)
      and not exists (select from {schema}.waiters w where w.job_id = j.id)
    order by case state when 'scheduled' then run_at when 'running' then lease_expires_at
                        else finished_at end
    limit %(limit)s
    for update skip locked
),
gone as (
    delete from {schema}.jobs j
    where j.id = any (array(select doomed.id from doomed))
    returning j.id, j.state, j.finished_at
),
recorded as (
    insert into {schema}.completed_recently (finished_at, ids)
    select g.finished_at, array_agg(g.id)
    from gone g
    where g.state = 'completed'
      and g.finished_at >= coalesce(%(now)s::timestamptz, now())
                           - make_interval(secs => %(recorded_for)s::float8)
    group by g.finished_at
)
select count(*) from gone;

-- name: completed_recently_prune
-- Records of deleted completed jobs older than keep seconds (an hour: see pruner.py).
-- Rows are only ever inserted, never updated or locked, so none is skipped: they are
-- picked by ctid (the table has no key), which nothing can change before the delete.
with doomed as (
    select r.ctid
    from {schema}.completed_recently r
    where r.finished_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(keep)s::float8)
    limit %(limit)s
),
gone as (
    delete from {schema}.completed_recently r
    where r.ctid = any (array(select doomed.ctid from doomed))
    returning 1
)
select count(*) from gone;

-- name: unique_key_prune_expired
-- Keys whose window has passed. An enqueue taking one over meanwhile has moved its
-- expires_at forward: the lock re-checks the condition on that version and skips it.
with doomed as (
    select k.key
    from {schema}.unique_keys k
    where k.expires_at < coalesce(%(now)s::timestamptz, now())
    order by k.expires_at
    limit %(limit)s
    for update skip locked
),
gone as (
    delete from {schema}.unique_keys k
    where k.key = any (array(select doomed.key from doomed))
    returning 1
)
select count(*) from gone;

-- name: unique_key_lock_held
-- Keys held until their job finishes, step 1 of 2, in a transaction: lock the next
-- slice of them, walking the table in key order from where the last pass stopped.
select k.key, k.job_id
from {schema}.unique_keys k
where k.expires_at is null and k.key > %(after)s
order by k.key
limit %(limit)s
for update skip locked;

-- name: unique_key_prune_finished
-- Step 2 of 2: delete those of the locked keys whose job finished or is gone. A new
-- statement, so a new snapshot, taken after the locks: a job committed with a key that
-- an enqueue took over before step 1 is visible here (see pgjobs/sql/unique.sql).
with gone as (
    delete from {schema}.unique_keys k
    using unnest(%(keys)s::text[], %(holders)s::int8[]) as r(key, job_id)
    where k.key = r.key and k.job_id = r.job_id and k.expires_at is null
      and not exists (select from {schema}.jobs j
                      where j.id = r.job_id
                        and j.state in ('scheduled', 'available', 'running'))
    returning 1
)
select count(*) from gone;

-- name: waiter_prune_stale
-- Waiters left behind by clients that died while waiting (Client.wait removes its own
-- row when it returns): their job has finished or is gone, and the row is older than
-- stale_after seconds (a minute: see pruner.py). A live waiter re-reads its job every second and leaves once it finished,
-- so none of its rows can match. waiters has no key: rows are picked by ctid, which the
-- row lock keeps from changing before the delete.
with doomed as (
    select w.ctid
    from {schema}.waiters w
    where w.since < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(stale_after)s::float8)
      and not exists (select from {schema}.jobs j
                      where j.id = w.job_id
                        and j.state in ('scheduled', 'available', 'running'))
    limit %(limit)s
    for update skip locked
),
gone as (
    delete from {schema}.waiters w
    where w.ctid = any (array(select doomed.ctid from doomed))
    returning 1
)
select count(*) from gone;
