-- Leader election: at most one live row per name in {schema}.leader.
--
-- Every statement is a single autocommit statement with no session state (no advisory
-- locks, no LISTEN), so election works through PgBouncer in transaction mode. Times are
-- the database's clock, so workers' clocks need not agree: %(now)s is NULL but in tests,
-- which pass a time to see a term run out without waiting (see jobs.sql). See
-- pgjobs/_worker/leader.py.

-- name: leader_attempt_elect
-- Become leader if there is none or the leader's term expired, or stay leader by
-- pushing our own expiry forward: one conditional upsert. A row comes back only if we
-- are the leader afterwards, with the previous holder of the row, the start of its term
-- and its last renewal (a new leader takes over the periodic schedules from there). A
-- worker that finds its own row expired starts a new term.
with previous as (
    select l.worker_id, l.elected_at, l.renewed_at
    from {schema}.leader l
    where l.name = %(name)s
),
elected as (
    insert into {schema}.leader as l (name, worker_id, elected_at, renewed_at, expires_at)
    values (%(name)s, %(worker_id)s, coalesce(%(now)s::timestamptz, now()),
            coalesce(%(now)s::timestamptz, now()),
            coalesce(%(now)s::timestamptz, now()) + make_interval(secs => %(ttl)s))
    on conflict (name) do update
    set worker_id = excluded.worker_id,
        elected_at = case when l.worker_id = excluded.worker_id
                               and l.expires_at > excluded.renewed_at
                          then l.elected_at else excluded.elected_at end,
        renewed_at = excluded.renewed_at,
        expires_at = excluded.expires_at
    where l.worker_id = excluded.worker_id or l.expires_at <= excluded.renewed_at
    returning l.elected_at, l.expires_at
)
select e.elected_at, e.expires_at, p.worker_id, p.elected_at, p.renewed_at
from elected e
left join previous p on true;

-- name: leader_resign
-- Graceful stop: end our term now, so another worker takes over at its next attempt
-- rather than when the term would have run out. The row stays, with the time of the
-- resignation as its last renewal, for the successor.
update {schema}.leader
set expires_at = coalesce(%(now)s::timestamptz, now()),
    renewed_at = coalesce(%(now)s::timestamptz, now())
where name = %(name)s and worker_id = %(worker_id)s;

-- name: leader_get
-- The live leader, if any.
select worker_id, elected_at, renewed_at, expires_at
from {schema}.leader
where name = %(name)s and expires_at > now();
