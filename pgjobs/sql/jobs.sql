-- Every statement pgjobs runs against the jobs table, named entity first.
--
-- {schema} is replaced once, at load, by the configured schema name (validated as a
-- plain lowercase identifier, see pgjobs/_queries.py). Everything else is a bound
-- parameter: no statement is ever assembled from user input.
--
-- The maintenance statements (job_stage_due, job_rescue_expired, job_next_lease_expiry,
-- job_extend_lease, and those of prune.sql, workers.sql and leader.sql) take the time
-- they treat as now as %(now)s: NULL, which is what the worker passes, is the server's
-- clock; a test passes a time instead, to see a lease run out or a job come due
-- without waiting for it (pgjobs/_worker/services.py).
--
-- Job states and who moves a job between them:
--   scheduled  --(job_stage_due, a worker's maintenance pass)-->            available
--   available  --(job_claim, a worker)-->                                    running
--   running    --(job_finish_many: completed / scheduled retry / failed)-->  ...
--   running    --(job_rescue_expired: lease ran out, worker presumed dead)-> available | failed
--   running    --(job_release: graceful shutdown gives the attempt back)-->  available

-- name: job_insert
-- One job. The wakeup NOTIFY is sent only when a worker of this queue is waiting for
-- work: a NOTIFY takes a cluster-wide lock at commit, so notifying on every insert
-- would serialise concurrent enqueuers exactly when workers are too busy to need it.
-- One INSERT whose RETURNING decides the NOTIFY from the row just written (a CTE and a
-- SELECT over it do the same work slower under concurrent enqueuers). Queue and kind are sent as text: typed as their columns' domains, each
-- value would be checked by domain_in, which sets the domain's rules up afresh for
-- every value; as text they are checked by the insert, which sets them up once.
insert into {schema}.jobs as j (queue, kind, payload, priority, max_retry, timeout, run_at,
                                state)
select %(queue)s::text, %(kind)s::text, %(payload)s::jsonb, %(priority)s, %(max_retry)s,
       make_interval(secs => %(timeout)s), t.run_at,
       case when t.run_at <= now() then 'available' else 'scheduled' end::{schema}.job_state
from (select coalesce(%(run_at)s::timestamptz,
                      now() + make_interval(secs => coalesce(%(delay)s::float8, 0))) as run_at) t
returning j.id,
          case when j.state = 'available'
                    and exists (select from {schema}.workers w
                                where w.waiting and j.queue = any (w.queues))
               then pg_notify('{schema}_wakeup', j.queue) end;

-- name: job_insert_traced
-- job_insert for an enqueue made with tracing on (pgjobs.tracing): it also stores the
-- enqueuer's trace context, which the other inserts leave NULL so that an untraced
-- enqueue sends nothing more. The wakeup is job_insert's.
insert into {schema}.jobs as j (queue, kind, payload, priority, max_retry, timeout, run_at,
                                state, trace_context)
select %(queue)s::text, %(kind)s::text, %(payload)s::jsonb, %(priority)s, %(max_retry)s,
       make_interval(secs => %(timeout)s), t.run_at,
       case when t.run_at <= now() then 'available' else 'scheduled' end::{schema}.job_state,
       %(trace_context)s::jsonb
from (select coalesce(%(run_at)s::timestamptz,
                      now() + make_interval(secs => coalesce(%(delay)s::float8, 0))) as run_at) t
returning j.id,
          case when j.state = 'available'
                    and exists (select from {schema}.workers w
                                where w.waiting and j.queue = any (w.queues))
               then pg_notify('{schema}_wakeup', j.queue) end;

-- name: job_insert_available
-- job_insert for a job due at once (neither run_at nor delay given), which is most jobs:
-- the row's defaults make it available from now(). The server does the same work as for
-- job_insert; the client sends two parameters fewer, and parameters are much of what a
-- client spends per enqueue. The wakeup is job_insert's.
insert into {schema}.jobs as j (queue, kind, payload, priority, max_retry, timeout)
values (%(queue)s::text, %(kind)s::text, %(payload)s::jsonb, %(priority)s, %(max_retry)s,
        make_interval(secs => %(timeout)s))
returning j.id,
          case when exists (select from {schema}.workers w
                            where w.waiting and j.queue = any (w.queues))
               then pg_notify('{schema}_wakeup', j.queue) end;

-- name: job_insert_defaults
-- job_insert_available for a job that also leaves priority, max_retry and timeout at
-- pgjobs.Task's defaults, which are the jobs table's defaults too (a test holds them
-- equal): the row's defaults fill them, and three parameters fewer are sent. The
-- wakeup is job_insert's.
insert into {schema}.jobs as j (queue, kind, payload)
values (%(queue)s::text, %(kind)s::text, %(payload)s::jsonb)
returning j.id,
          case when exists (select from {schema}.workers w
                            where w.waiting and j.queue = any (w.queues))
               then pg_notify('{schema}_wakeup', j.queue) end;

-- name: job_reserve_ids
-- Bulk enqueue, step 1 of 3: ids for the rows COPY will write (so they come back in input
-- order), and the database's clock, which decides which of them are due already.
select now(), array(select nextval('{schema}.jobs_id_seq') from generate_series(1, %(count)s));

-- name: job_copy
-- Bulk enqueue, step 2 of 3: the rows themselves, by COPY (several times faster than
-- INSERT ... SELECT FROM unnest(...) for large batches).
copy {schema}.jobs (id, queue, kind, payload, priority, max_retry, timeout, run_at, state)
from stdin;

-- name: job_copy_traced
-- job_copy for a bulk enqueue made with tracing on: each row also carries the trace
-- context of the enqueue (see job_insert_traced).
copy {schema}.jobs (id, queue, kind, payload, priority, max_retry, timeout, run_at, state,
                    trace_context)
from stdin;

-- name: queue_wake
-- Bulk enqueue, step 3 of 3: one NOTIFY per queue that got due jobs, and only if a worker
-- of that queue is waiting (see job_insert).
select q.queue, pg_notify('{schema}_wakeup', q.queue)
from unnest(%(queues)s::text[]) as q(queue)
where exists (select from {schema}.workers w where w.waiting and q.queue = any (w.queues));

-- name: job_claim
-- Claim up to limits[i] available jobs from queues[i], highest priority (lowest number)
-- first, in one statement. The caller decides the per-queue limits from the queue
-- weights (see pgjobs/_weights.py); queues without a limit are not touched.
-- SKIP LOCKED lets concurrent workers claim disjoint rows without waiting.
-- The lease is at most lease_seconds, and never much past the job's own deadline.
-- A paused queue (a row in queues with paused_at set) is skipped here, so a pause takes
-- effect at every worker's next claim.
--
-- after_priorities[i], after_ids[i] (optional, NULL for none): start queues[i]'s scan
-- after this (priority, id), where the worker's previous claim from it ended. Claimed
-- rows leave dead entries at the front of jobs_claim_idx until vacuum removes them, and
-- a scan from the front walks them all: draining a backlog of 1M, claims took half as
-- long again by the end. A job that lands behind that point (a higher priority, a retry
-- of an older job) is found by the worker's next scan from the front, which it makes at
-- least every 100 ms and whenever a scan from a point comes up short (Worker._claim).
with quota as (
    select q.queue, q.n,
           coalesce(q.after_priority, -32768) as after_priority,
           coalesce(q.after_id, 0) as after_id
    from unnest(%(queues)s::text[], %(limits)s::int4[],
                %(after_priorities)s::int2[], %(after_ids)s::int8[])
         as q(queue, n, after_priority, after_id)
    where q.n > 0
      and not exists (select from {schema}.queues p
                      where p.name = q.queue and p.paused_at is not null)
),
picked as (
    select c.id
    from quota
    cross join lateral (
        select j.id
        from {schema}.jobs j
        where j.state = 'available' and j.queue = quota.queue
          and (j.priority, j.id) > (quota.after_priority, quota.after_id)
        order by j.priority, j.id
        limit quota.n
        for update skip locked
    ) c
),
-- A worker that was waiting for a NOTIFY (unwait) and now has work stops asking for them.
unwait as (
    update {schema}.workers
    set waiting = false
    where %(unwait)s and id = %(worker_id)s and exists (select from picked)
)
update {schema}.jobs j
set state = 'running',
    attempt = j.attempt + 1,
    started_at = now(),
    lease_expires_at = now() + least(j.timeout + make_interval(secs => %(grace)s),
                                     make_interval(secs => %(lease)s)),
    worker_id = %(worker_id)s
-- By id list, not a join with picked: the planner cannot know the per-queue limits and
-- would plan for thousands of rows, merge-joining along the primary key from its start
-- through every dead entry that finished jobs left behind.
where j.id = any (array(select picked.id from picked))
-- payload and errors go as JSON text, decoded by the worker one row at a time: a value
-- that jsonb holds but Python cannot decode (nested thousands deep, an integer of
-- thousands of digits) then fails its own job, not the whole claim (Worker._start).
-- trace_context, the same way, is decoded only by a worker that traces (pgjobs.tracing),
-- and a context it cannot read is ignored.
returning j.id, j.queue, j.kind, j.payload::text, j.priority, j.attempt, j.max_retry,
          extract(epoch from j.timeout)::float8, j.errors::text, j.trace_context::text;

-- name: job_finish_many
-- Record finished attempts in one statement. Every row is guarded by state and attempt:
-- an attempt whose lease expired and was rescued (and maybe re-claimed) can no longer
-- write its outcome over the newer one. Completed jobs are deleted when not retained
-- (delete_completed), unless a client waits for them (a row in waiters): Client.wait
-- must read the result, and the leader's pruner deletes the row once it has left.
-- outcome.state is 'completed', 'failed', 'cancelled' or 'scheduled' (a retry, or a
-- snooze, run after delay seconds); refund gives the attempt back (a snooze is not a
-- failure); result is the handler's return value as JSON text. Clients blocked in
-- wait() on one of these jobs (a row in waiters) get a NOTIFY on {schema}_finished.
-- The ids of the completed jobs it deletes go to completed_recently, so that why() can
-- still say they completed (see migrations/schema.sql).
-- A column that holds only its default for the whole batch may be sent as NULL instead
-- (states: completed, delays: 0, refunds: false, errors and results: none), and the
-- arrays are sent in binary (the b placeholders): turning a batch of Python values into
-- array text costs the worker more than the rest of its bookkeeping.
--
-- Plan shape matters. A queue table's statistics are always stale (analysed when the
-- rows were 'available', now they are 'running'), and a guard written as
-- j.state = 'running' is estimated from them: the planner expects no such rows and
-- builds a nested loop that rescans the batch per row, or scans all running jobs in
-- jobs_state_time_idx per outcome; both are quadratic in the batch size (seconds for 5,000
-- outcomes). So the guard compares j.state with a column of the outcome list (o.running):
-- a join condition, which no column statistics can turn into a scan estimate, so the
-- rows are found by primary key. UPDATE and DELETE re-check every condition on the
-- newest version of a row another transaction changed meanwhile, so the guard holds.
with outcome as (
    select o.id, o.attempt, coalesce(o.state, 'completed') as state,
           coalesce(o.delay, 0) as delay, o.error, o.result,
           coalesce(o.refund, false) as refund, 'running'::{schema}.job_state as running,
           %(delete_completed)s and coalesce(o.state, 'completed') = 'completed'
               and not exists (select from {schema}.waiters w where w.job_id = o.id)
               as gone
    from unnest(%(ids)b::int8[], %(attempts)b::int4[], %(states)b::text[],
                %(delays)b::float8[], %(errors)b::text[], %(results)b::text[],
                %(refunds)b::bool[])
         as o(id, attempt, state, delay, error, result, refund)
),
deleted as (
    delete from {schema}.jobs j
    using outcome o
    where o.gone
      and j.id = o.id and j.attempt = o.attempt and j.state = o.running
    returning j.id, j.queue, o.state
),
-- The deleted ids as one row for why() (the table is unlogged: no WAL), none when no job
-- was deleted.
recorded as (
    insert into {schema}.completed_recently (ids)
    select array_agg(d.id) from deleted d
    having count(*) > 0
),
updated as (
    update {schema}.jobs j
    set state = case when o.state = 'scheduled' and o.delay <= 0 then 'available'
                     else o.state end::{schema}.job_state,
        attempt = j.attempt - o.refund::int,
        result = o.result::jsonb,
        run_at = case when o.state = 'scheduled'
                      then now() + make_interval(secs => o.delay) else j.run_at end,
        finished_at = case when o.state in ('completed', 'failed', 'cancelled')
                           then now() end,
        last_error = coalesce(o.error, j.last_error),
        errors = case when o.error is null then j.errors
                      else coalesce(j.errors, '[]'::jsonb) || jsonb_build_array(
                               jsonb_build_object('attempt', o.attempt, 'at', now(),
                                                  'error', o.error)) end,
        lease_expires_at = null,
        worker_id = null
    from outcome o
    where not o.gone
      and j.id = o.id and j.attempt = o.attempt and j.state = o.running
    returning j.id, j.queue, o.state
),
finished as (
    select * from deleted
    union all
    select * from updated
),
counted as (
    insert into {schema}.stats as s (minute, queue, worker_id, completed, failed, retried)
    select date_trunc('minute', now()), f.queue, %(worker_id)s,
           count(*) filter (where f.state = 'completed'),
           count(*) filter (where f.state in ('failed', 'cancelled')),
           count(*) filter (where f.state = 'scheduled')
    from finished f
    group by f.queue
    on conflict (minute, queue, worker_id) do update
    set completed = s.completed + excluded.completed,
        failed = s.failed + excluded.failed,
        retried = s.retried + excluded.retried
),
waited as (
    select pg_notify('{schema}_finished', f.id::text)
    from finished f
    where exists (select from {schema}.waiters w where w.job_id = f.id)
)
-- Ids whose outcome was recorded; an id missing here lost its claim (rescued or cancelled).
-- The scalar subquery makes the waited CTE run (an unreferenced CTE never does).
select id, (select count(*) from waited) from finished;

-- name: job_release
-- Graceful shutdown: give unfinished attempts back, as if they never started, so a
-- deploy does not eat into a job's retries. Guarded like job_finish_many (o.running).
update {schema}.jobs j
set state = 'available', attempt = j.attempt - 1, lease_expires_at = null, worker_id = null
from (
    select o.*, 'running'::{schema}.job_state as running
    from unnest(%(ids)s::int8[], %(attempts)s::int4[]) as o(id, attempt)
) o
where j.id = o.id and j.attempt = o.attempt and j.state = o.running
returning j.id;

-- name: job_release_orphans
-- After this worker's claim connection failed: jobs the database says it runs but that it
-- never received (the claim committed, its reply was lost). Given back at once with the
-- attempt refunded, rather than waiting out their lease and counting as a failed attempt.
-- known: the jobs the worker does hold (running, or with an outcome still to be written).
update {schema}.jobs j
set state = 'available', attempt = j.attempt - 1, lease_expires_at = null, worker_id = null
where j.state = 'running' and j.worker_id = %(worker_id)s and j.id <> all (%(known)s::int8[])
returning j.id;

-- name: job_extend_lease
-- Heartbeat for long attempts: push their lease forward, never past deadline + grace.
-- Guarded like job_finish_many (o.running).
update {schema}.jobs j
set lease_expires_at = least(coalesce(%(now)s::timestamptz, now())
                                 + make_interval(secs => %(lease)s),
                             j.started_at + j.timeout + make_interval(secs => %(grace)s))
from (
    select o.*, 'running'::{schema}.job_state as running
    from unnest(%(ids)s::int8[], %(attempts)s::int4[]) as o(id, attempt)
) o
where j.id = o.id and j.attempt = o.attempt and j.state = o.running
returning j.id;

-- name: job_confirm_cancelled
-- Of the attempts a worker was told were cancelled (on {schema}_control, which anyone
-- who can log in may NOTIFY), those whose row says so: cancel_job wrote it, under the
-- privileges it takes to update the jobs table. Only these are stopped.
select j.id
from unnest(%(ids)s::int8[], %(attempts)s::int4[]) as o(id, attempt)
join {schema}.jobs j on j.id = o.id and j.attempt = o.attempt
where j.state = 'cancelled';

-- name: job_stage_due
-- Make scheduled jobs whose time has come available, in small batches, and wake
-- waiting workers of their queues. The CASE is jobs_state_time_idx's (schema.sql),
-- written as there so that the index serves the search: for a scheduled job, its run_at.
with due as (
    select id
    from {schema}.jobs
    where state = 'scheduled'
      and case state when 'scheduled' then run_at when 'running' then lease_expires_at
                     else finished_at end <= coalesce(%(now)s::timestamptz, now())
    order by case state when 'scheduled' then run_at when 'running' then lease_expires_at
                        else finished_at end
    limit %(limit)s
    for update skip locked
),
staged as (
    update {schema}.jobs j
    set state = 'available'
    from due
    where j.id = due.id
    returning j.queue
)
-- One row per queue: how many of its jobs were staged, and the wakeup.
select s.queue, count(*)::int, pg_notify('{schema}_wakeup', s.queue)
from staged s
group by s.queue;

-- name: job_rescue_expired
-- Crash recovery: a running job whose lease ran out belongs to a worker that died or
-- lost its database connection. The attempt counts (the job itself may be what kills
-- workers), so it becomes available again, or failed when no retry is left.
-- FOR UPDATE re-checks state and lease on the newest row version, so a job completed
-- meanwhile is never overwritten. The CASE is jobs_state_time_idx's (see job_stage_due):
-- for a running job, its lease_expires_at.
with expired as (
    select id
    from {schema}.jobs
    where state = 'running'
      and case state when 'scheduled' then run_at when 'running' then lease_expires_at
                     else finished_at end < coalesce(%(now)s::timestamptz, now())
    order by case state when 'scheduled' then run_at when 'running' then lease_expires_at
                        else finished_at end
    limit %(limit)s
    for update skip locked
),
-- A running job without a lease (written so by hand: pgjobs never leaves one) is held
-- by no worker, so it is given back the same way.
leaseless as (
    select id
    from {schema}.jobs
    where state = 'running'
      and case state when 'scheduled' then run_at when 'running' then lease_expires_at
                     else finished_at end is null
    limit %(limit)s
    for update skip locked
),
rescued as (
    update {schema}.jobs j
    set state = case when j.attempt > j.max_retry then 'failed'
                     else 'available' end::{schema}.job_state,
        finished_at = case when j.attempt > j.max_retry
                           then coalesce(%(now)s::timestamptz, now()) end,
        last_error = case
            when j.lease_expires_at is null then 'running without a lease: no worker held it'
            else format('lease expired at %%s: worker %%s stopped renewing it (crashed, '
                        'killed or lost its database connection)',
                        j.lease_expires_at, j.worker_id) end,
        errors = coalesce(j.errors, '[]'::jsonb) || jsonb_build_array(
                     jsonb_build_object('attempt', j.attempt,
                                        'at', coalesce(%(now)s::timestamptz, now()),
                                        'error', 'lease expired')),
        lease_expires_at = null,
        worker_id = null
    from (select id from expired union all select id from leaseless) expired
    where j.id = expired.id  -- locked above with its state checked; see job_finish_many
    returning j.id, j.queue, j.state
),
woken as (
    select pg_notify('{schema}_wakeup', q.queue)
    from (select distinct queue from rescued where state = 'available') q
)
select id, state, (select count(*) from woken) as woken from rescued;

-- name: job_next_lease_expiry
-- Seconds until the earliest lease of a running job runs out (negative if one already
-- has; no row if nothing runs), so the rescuer can look just then. The CASE is
-- jobs_state_time_idx's (see job_stage_due): one index probe.
select extract(epoch from case state when 'scheduled' then run_at
                                     when 'running' then lease_expires_at
                                     else finished_at end
                         - coalesce(%(now)s::timestamptz, now()))::float8
from {schema}.jobs
where state = 'running'
  and case state when 'scheduled' then run_at when 'running' then lease_expires_at
                 else finished_at end is not null
order by case state when 'scheduled' then run_at when 'running' then lease_expires_at
                    else finished_at end
limit 1;

-- name: job_get
-- Jobs by id, as pgjobs.job.Job reads them: every read of a job (Client.get and wait,
-- admin.get_job, pgjobs.testing) runs this one statement, with one id or many. Its
-- column names are Job's fields, in order (tests/test_sql_operations.py checks them).
-- Times through job_time(): a row written by hand, past the table's rules,
-- may hold a time no Python datetime can (years 1 to 9999, in every time zone).
select j.id, j.queue, j.kind, j.state::text as state, j.priority, j.attempt, j.max_retry,
       {schema}.job_time(j.run_at) as run_at, {schema}.job_time(j.created_at) as created_at,
       {schema}.job_time(j.started_at) as started_at,
       {schema}.job_time(j.finished_at) as finished_at, j.payload, j.result,
       extract(epoch from j.timeout)::float8 as timeout, j.last_error,
       coalesce(j.errors, '[]'::jsonb) as errors, j.worker_id,
       {schema}.job_time(j.lease_expires_at) as lease_expires_at, w.host as worker_host,
       w.pid as worker_pid
from {schema}.jobs j
left join {schema}.workers w on w.id = j.worker_id
where j.id = any (%(ids)s::bigint[])
order by j.id;

-- name: waiter_add
-- A client starts waiting for a job (see job_finish_many's waited CTE).
insert into {schema}.waiters (job_id) values (%(id)s);

-- name: waiter_remove
delete from {schema}.waiters
where ctid = (select ctid from {schema}.waiters where job_id = %(id)s limit 1);
