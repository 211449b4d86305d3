-- Throughput counters written by workers' completers (see job_finish_many).

-- name: stats_prune
-- Counters are for recent throughput (queue_summary reads the last minute or two); a
-- day of them (keep, in seconds: see pruner.py) is plenty. Run by the leader's pruner in
-- batches, like prune.sql, with its %(now)s.
with doomed as (
    select s.minute, s.queue, s.worker_id
    from {schema}.stats s
    where s.minute < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(keep)s::float8)
    limit %(limit)s
    for update skip locked
),
gone as (
    delete from {schema}.stats s
    using doomed d
    where (s.minute, s.queue, s.worker_id) = (d.minute, d.queue, d.worker_id)
    returning 1
)
select count(*) from gone;
