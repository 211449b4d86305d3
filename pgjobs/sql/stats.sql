-- Throughput counters written by workers' completers (see job_finish_many).

-- name: stats_prune
-- Counters are for recent throughput; a day of them is plenty.
delete from {schema}.stats
where minute < now() - interval '1 day';
