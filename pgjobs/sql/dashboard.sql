-- What the web dashboard (pgjobs/dashboard/) reads and changes beyond admin.sql.
--
-- Its pages also run admin.sql's worker_list_live, job_list, job_why, jobs.sql's job_get,
-- doctor_run and the single-job and queue actions, and /metrics reads queue_summary; only
-- what those do not cover is here.

-- name: dashboard_throughput
-- Finished attempts per queue and minute over the last hour, for the queues page's
-- charts. The stats primary key starts with the minute, so only the hour's rows are read.
select queue, minute, sum(completed)::bigint, sum(failed)::bigint, sum(retried)::bigint
from {schema}.stats
where minute >= date_trunc('minute', now()) - interval '59 minutes'
group by queue, minute
order by queue, minute;

-- name: dashboard_job_retry_matching
-- Bulk retry: every failed job the filter matches, at most *limit* of them, each through
-- retry_job (which locks the row, rechecks its state and wakes the queue's workers).
-- Returns how many were retried.
select count(*)
from (
    select id
    from {schema}.jobs
    where state = 'failed'
      and (%(queue)s::text is null or queue = %(queue)s)
      and (%(kind)s::text is null or kind = %(kind)s)
      and (%(error)s::text is null or strpos(lower(last_error), lower(%(error)s)) > 0)
      and (%(since)s::timestamptz is null or created_at >= %(since)s)
    order by id
    limit %(limit)s
) matching
where {schema}.retry_job(matching.id);

-- name: dashboard_job_delete
-- Delete a job that is not running (a running one is cancelled first, so that its
-- worker is told); the deleted row's id, or nothing.
delete from {schema}.jobs
where id = %(id)s and state <> 'running'
returning id;

-- name: dashboard_queue_counts
-- The queues page: per queue, jobs by state, read so that the cost stays bounded however
-- many jobs are retained (queue_summary counts every row, seconds on millions).
--
-- * available: counted per queue in jobs_claim_idx (the claim's own index: queue first),
--   at most *cap* + 1 entries per queue; available_capped says the count stopped there.
--   oldest_ready_at is the earliest run_at among those entries (the next to be claimed),
--   and among the earliest due scheduled jobs: exact below the cap, and a lower bound on
--   the age above it.
-- * scheduled, running, failed, cancelled: at most *cap* + 1 jobs of each state, across
--   all queues, read in jobs_state_time_idx order (earliest first; the CASE is the index's,
--   see migrations/schema.sql). A state with more is listed in capped_states, and its per-queue
--   counts are then lower bounds.
-- * completed is not counted: retained finished jobs are the bulk of the table. The page
--   shows the last hour's throughput from stats instead.
-- * the queues listed: those with a setting row, a live worker, stats in the last hour,
--   an available job, or a job in the capped reads.
with recursive ready_queue(queue) as (
    -- One index probe per queue with available jobs (a skip scan of jobs_claim_idx).
    (select j.queue from {schema}.jobs j where j.state = 'available'
     order by j.queue limit 1)
    union all
    select (select j.queue from {schema}.jobs j
            where j.state = 'available' and j.queue > r.queue
            order by j.queue limit 1)
    from ready_queue r
    where r.queue is not null
),
sampled as (
    select s.state, j.queue, j.run_at
    from unnest(array['scheduled', 'running', 'failed', 'cancelled']::{schema}.job_state[])
         as s(state)
    cross join lateral (
        select j.queue, j.run_at
        from {schema}.jobs j
        where j.state = s.state and j.state <> 'available'
        order by j.state, case j.state when 'scheduled' then j.run_at
                                       when 'running' then j.lease_expires_at
                                       else j.finished_at end
        limit %(cap)s + 1
    ) j
),
by_state as (
    select queue,
           count(*) filter (where state = 'scheduled') as scheduled,
           count(*) filter (where state = 'running') as running,
           count(*) filter (where state = 'failed') as failed,
           count(*) filter (where state = 'cancelled') as cancelled,
           min(run_at) filter (where state = 'scheduled' and run_at <= now()) as due_at
    from sampled
    group by queue
),
served as (
    select q.queue, count(*) as workers, sum(w.concurrency) as concurrency
    from {schema}.workers w, unnest(w.queues) as q(queue)
    where w.heartbeat_at > {schema}.worker_live_after()
    group by q.queue
),
window_ as (
    select date_trunc('minute', now()) as this_minute,
           1 - extract(epoch from now() - date_trunc('minute', now())) / 60 as previous_share
),
rate as (
    -- As queue_summary: this minute, plus the share of the previous one still in the
    -- last 60 seconds.
    select s.queue,
           round(sum(s.completed * case when s.minute = w.this_minute then 1
                                        else w.previous_share end))::bigint as completed,
           round(sum(s.failed * case when s.minute = w.this_minute then 1
                                     else w.previous_share end))::bigint as failed,
           round(sum(s.retried * case when s.minute = w.this_minute then 1
                                      else w.previous_share end))::bigint as retried
    from {schema}.stats s, window_ w
    where s.minute >= w.this_minute - interval '1 minute'
    group by s.queue
),
names as (
    select name as queue from {schema}.queues
    union select queue from served
    union select queue from {schema}.stats
          where minute >= date_trunc('minute', now()) - interval '59 minutes'
    union select queue from ready_queue where queue is not null
    union select queue from by_state
)
select n.queue,
       p.paused_at is not null as paused,
       p.paused_at,
       coalesce(b.scheduled, 0) as scheduled,
       least(a.available, %(cap)s) as available,
       a.available > %(cap)s as available_capped,
       coalesce(b.running, 0) as running,
       coalesce(b.failed, 0) as failed,
       coalesce(b.cancelled, 0) as cancelled,
       now() - least(a.oldest_at, b.due_at) as oldest_ready_age,
       coalesce(r.completed, 0) as completed_last_minute,
       coalesce(r.failed, 0) as failed_last_minute,
       coalesce(r.retried, 0) as retried_last_minute,
       coalesce(s.workers, 0) as workers,
       coalesce(s.concurrency, 0) as concurrency,
       array(select t.state::text from sampled t group by t.state
             having count(*) > %(cap)s order by 1) as capped_states
from names n
cross join lateral (
    select count(*) as available, min(c.run_at) as oldest_at
    from (select j.run_at
          from {schema}.jobs j
          where j.state = 'available' and j.queue = n.queue
          order by j.priority, j.id
          limit %(cap)s + 1) c
) a
left join by_state b on b.queue = n.queue
left join {schema}.queues p on p.name = n.queue
left join served s on s.queue = n.queue
left join rate r on r.queue = n.queue
order by n.queue;
