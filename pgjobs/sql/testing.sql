-- The statements pgjobs.testing adds to the worker's own, for tests that enqueue and run
-- jobs inside their transaction. Jobs are claimed with job_claim and finished with
-- job_finish_many (jobs.sql), exactly as a worker does; the statements here only list
-- jobs and choose which one the next claim takes. Never run by a worker.

-- name: job_list_matching
-- The id of every job the connection can see, oldest first, with whether it matches the
-- filters (a null filter matches anything); job_get (jobs.sql) then reads the jobs. In a
-- test's open transaction that includes the jobs it enqueued and has not committed.
-- Payloads compare as jsonb: payload is equality, contains is jsonb containment (@>).
select id,
       (%(kind)s::text is null or kind = %(kind)s::text)
       and (%(queue)s::text is null or queue = %(queue)s::text)
       and (%(states)s::text[] is null or state::text = any (%(states)s::text[]))
       and (%(payload)s::jsonb is null or payload = %(payload)s::jsonb)
       and (%(contains)s::jsonb is null or payload @> %(contains)s::jsonb) as matches
from {schema}.jobs
order by id;

-- name: job_next_queue
-- The queue of the job a worker serving queues (all queues when null) would run next if
-- it ran one job at a time: available, not in a paused queue (job_claim skips those),
-- lowest priority number, then oldest. job_claim on that queue alone takes that job.
select j.queue
from {schema}.jobs j
where j.state = 'available'
  and (%(queues)s::text[] is null or j.queue = any (%(queues)s::text[]))
  and not exists (select from {schema}.queues p
                  where p.name = j.queue and p.paused_at is not null)
order by j.priority, j.id
limit 1;

-- name: job_stage_early
-- drain(run_scheduled=True): make the scheduled jobs of the queues (all when null)
-- available now, whatever their run_at: delayed jobs, and retries waiting for their
-- backoff (a test's transaction keeps now() where it started, so they never come due).
update {schema}.jobs
set state = 'available'
where state = 'scheduled'
  and (%(queues)s::text[] is null or queue = any (%(queues)s::text[]))
returning id;

-- name: job_isolate
-- run_job, step 1 of 3: so that job_claim takes this job and no other, move it into a
-- queue of its own (made available if it was scheduled). Only an available or scheduled
-- job moves; the job's queue and state before are returned either way (no row: no job).
with old as (
    select id, queue, state
    from {schema}.jobs
    where id = %(id)s
    for update
),
moved as (
    update {schema}.jobs j
    set queue = %(queue)s::text, state = 'available'
    from old
    where j.id = old.id and old.state in ('available', 'scheduled')
    returning j.id
)
select old.queue, old.state::text, exists (select from moved)
from old;

-- name: job_set_queue
-- run_job, step 3 of 3: once job_claim (step 2) has taken it, the job goes back to its
-- queue, before its handler runs.
update {schema}.jobs
set queue = %(queue)s::text
where id = %(id)s;
