-- What the web dashboard (pgjobs/dashboard/) reads and changes beyond admin.sql.
--
-- Its pages also run admin.sql's queue_summary, worker_list_live, job_list, job_get,
-- job_why, doctor_run and the single-job and queue actions; only what those do not cover
-- is here.

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

-- name: dashboard_job_result
-- What the handler returned (admin.get_job leaves it out: it can be large).
select result from {schema}.jobs where id = %(id)s;
