-- The workers table: one row per live worker process, kept fresh by its heartbeat.
-- It is what operators read to see who is working, and what enqueuers read to decide
-- whether anyone is waiting for a wakeup NOTIFY (the waiting flag).

-- name: worker_register
-- kinds: the job kinds its handlers run, for doctor() and why() to name the kinds that
-- no live worker can run; weights: each queue's weight, in the order of queues.
insert into {schema}.workers (id, host, pid, queues, concurrency, version, kinds, weights)
values (%(id)s, %(host)s, %(pid)s, %(queues)s, %(concurrency)s, %(version)s, %(kinds)s,
        %(weights)s);

-- name: worker_heartbeat
-- Also re-creates the row if a maintenance pass pruned it while this worker was cut off.
-- %(now)s: the time of the beat, NULL for the server's clock (see jobs.sql).
insert into {schema}.workers as w (id, host, pid, queues, concurrency, version, kinds,
                                   weights, heartbeat_at)
values (%(id)s, %(host)s, %(pid)s, %(queues)s, %(concurrency)s, %(version)s, %(kinds)s,
        %(weights)s, coalesce(%(now)s::timestamptz, now()))
on conflict (id) do update set heartbeat_at = excluded.heartbeat_at;

-- name: worker_set_waiting
-- A worker with nothing to do sets waiting before it sleeps on LISTEN, then looks for
-- work once more, so a job committed between its last claim and the flag is not missed.
update {schema}.workers set waiting = %(waiting)s where id = %(id)s;

-- name: worker_unregister
delete from {schema}.workers where id = %(id)s;

-- name: worker_prune_stale
-- Forget workers that stopped heartbeating; their jobs are rescued by lease, not here.
delete from {schema}.workers
where heartbeat_at < coalesce(%(now)s::timestamptz, now())
                     - make_interval(secs => %(stale_after)s)
returning id;

-- name: schema_version
select version_num from {schema}.pgjobs_version;
