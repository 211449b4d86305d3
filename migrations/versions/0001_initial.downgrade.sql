-- Revision 0001 down to nothing: every object of migrations/schema.sql, dependents first.
-- The schema itself stays, with pgjobs' version table in it.

DROP FUNCTION {schema}.grant_roles(text, text, text, boolean);
DROP FUNCTION {schema}.doctor(interval);
DROP FUNCTION {schema}.why(bigint);
DROP FUNCTION {schema}.purge_finished(interval, integer, {schema}.job_state[]);
DROP FUNCTION {schema}.resume_queue(text);
DROP FUNCTION {schema}.pause_queue(text, boolean);
DROP FUNCTION {schema}.cancel_job(bigint, text);
DROP FUNCTION {schema}.retry_failed(text, text);
DROP FUNCTION {schema}.retry_job(bigint);
DROP FUNCTION {schema}.job_not_found(bigint);
DROP FUNCTION {schema}.enqueue(text, jsonb, text, integer, integer, interval, timestamptz,
                               interval, text, interval);

DROP VIEW {schema}.vacuum_blockers;
DROP VIEW {schema}.failed_jobs;
DROP VIEW {schema}.running_jobs;
DROP VIEW {schema}.queue_summary;
DROP VIEW {schema}.live_workers;

DROP TRIGGER jobs_insert_guard ON {schema}.jobs;
DROP FUNCTION {schema}.job_insert_guard();
DROP FUNCTION {schema}.job_time(timestamptz);
DROP FUNCTION {schema}.queue_known(text);
DROP FUNCTION {schema}.wakeup(text);
DROP FUNCTION {schema}.format_duration(interval);
DROP FUNCTION {schema}.worker_live_after();

DROP TABLE {schema}.leader;
DROP TABLE {schema}.unique_keys;
DROP TABLE {schema}.completed_recently;
DROP TABLE {schema}.waiters;
DROP TABLE {schema}.stats;
DROP TABLE {schema}.queues;
DROP TABLE {schema}.workers;
DROP TABLE {schema}.jobs;

DROP DOMAIN {schema}.job_run_at;
DROP DOMAIN {schema}.job_attempt;
DROP DOMAIN {schema}.job_timeout;
DROP DOMAIN {schema}.job_max_retry;
DROP DOMAIN {schema}.job_queue;
DROP DOMAIN {schema}.job_kind;
DROP TYPE {schema}.job_state;
