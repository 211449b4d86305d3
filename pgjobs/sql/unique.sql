-- Unique jobs: claiming a key in {schema}.unique_keys in the enqueuing transaction.
--
-- A key row says which job holds the key and until when (expires_at; NULL: until that
-- job finishes). Claiming is one INSERT ... ON CONFLICT on the key's primary key, so it
-- is race-free: a second enqueuer of the same key waits on the first one's uncommitted
-- row, then sees it committed (a duplicate) or gone (rolled back: it claims the key
-- itself). A rolled-back enqueue never leaves a key behind: the key and the job are
-- written in the same transaction. The window is the key row's, independent of how long
-- the job's own row is kept.
--
-- Snapshots. ON CONFLICT DO UPDATE always locks the newest version of the key row, but
-- the rest of the statement reads with the statement's snapshot, taken before it waited
-- for the other enqueuer; so the job of a key committed meanwhile can look missing. A
-- statement therefore never concludes "the holder's job finished" from its own snapshot:
-- unique_key_release_finished, a later statement (a new snapshot, with the key row
-- already locked by us), does. See pgjobs/_enqueue.py for the whole sequence, and the SQL
-- function {schema}.enqueue (migrations/schema.sql) for the same in PL/pgSQL.

-- name: job_insert_unique
-- One unique job: claim the key for a new id (or take over an expired one), and insert
-- the job only if the key is now ours. Always updates the conflicting row (to itself
-- when it is not taken over) so that RETURNING gives the holder's id in one round trip.
-- Keep the job columns in step with job_insert (pgjobs/sql/jobs.sql). trace_context is
-- NULL unless the enqueue traced (see job_insert_traced).
with new as (
    select nextval('{schema}.jobs_id_seq') as id
),
claim as (
    insert into {schema}.unique_keys as k (key, job_id, expires_at)
    select %(unique_key)s, new.id, now() + make_interval(secs => %(unique_for)s::float8)
    from new
    on conflict (key) do update
    set job_id = case when k.expires_at <= now() then excluded.job_id else k.job_id end,
        created_at = case when k.expires_at <= now() then now() else k.created_at end,
        expires_at = case when k.expires_at <= now() then excluded.expires_at
                          else k.expires_at end
    returning k.job_id, k.expires_at
),
job as (
    insert into {schema}.jobs (id, queue, kind, payload, priority, max_retry, timeout, run_at,
                               state, trace_context)
    select new.id, %(queue)s::text, %(kind)s::text, %(payload)s::jsonb, %(priority)s,
           %(max_retry)s, make_interval(secs => %(timeout)s), t.run_at,
           case when t.run_at <= now() then 'available' else 'scheduled' end::{schema}.job_state,
           %(trace_context)s::jsonb
    from new
    join claim on claim.job_id = new.id
    cross join (select coalesce(%(run_at)s::timestamptz,
                                now() + make_interval(secs => coalesce(%(delay)s::float8, 0)))
                       as run_at) t
    returning id, queue, state
)
-- holder, whether we inserted, whether the key is held until its job finishes, whether
-- that job is unfinished as far as this snapshot can tell (see above), the wakeup.
select claim.job_id,
       job.id is not null,
       claim.expires_at is null,
       exists (select from {schema}.jobs j
               where j.id = claim.job_id and j.state in ('scheduled', 'available', 'running')),
       case when job.state = 'available'
                 and exists (select from {schema}.workers w
                             where w.waiting and job.queue = any (w.queues))
            then pg_notify('{schema}_wakeup', job.queue) end
from claim
left join job on true;

-- name: unique_key_claim_many
-- Bulk enqueue of unique jobs: claim each key (distinct keys, in key order so that two
-- concurrent batches lock them in the same order and cannot deadlock) for the id
-- reserved for its task. Returns, per key, the holder and what job_insert_unique returns
-- about it; the caller COPYs the jobs whose key it now holds.
with claim as (
    insert into {schema}.unique_keys as k (key, job_id, expires_at)
    select c.key, c.job_id, now() + make_interval(secs => c.unique_for)
    from unnest(%(keys)s::text[], %(ids)s::int8[], %(unique_for)s::float8[])
         as c(key, job_id, unique_for)
    order by c.key
    on conflict (key) do update
    set job_id = case when k.expires_at <= now() then excluded.job_id else k.job_id end,
        created_at = case when k.expires_at <= now() then now() else k.created_at end,
        expires_at = case when k.expires_at <= now() then excluded.expires_at
                          else k.expires_at end
    returning k.key, k.job_id, k.expires_at
)
select claim.key,
       claim.job_id,
       claim.expires_at is null,
       exists (select from {schema}.jobs j
               where j.id = claim.job_id and j.state in ('scheduled', 'available', 'running'))
from claim;

-- name: unique_key_release_finished
-- Free keys held until their job finishes whose job has finished (or is gone). Run after
-- a claim statement of this transaction locked these key rows: its snapshot is newer
-- than the holders' commits, so a job missing here really is gone. Returns the freed
-- keys; the caller claims them again.
delete from {schema}.unique_keys k
using unnest(%(keys)s::text[], %(holders)s::int8[]) as r(key, job_id)
where k.key = r.key and k.job_id = r.job_id and k.expires_at is null
  and not exists (select from {schema}.jobs j
                  where j.id = r.job_id and j.state in ('scheduled', 'available', 'running'))
returning k.key;
