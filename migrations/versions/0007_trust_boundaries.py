"""Trust boundaries: what a new job may say, and values every reader can read back.

* ``jobs_insert_guard``: a row a role inserts is a new job, the way ``enqueue()`` makes
  one. Its id is one the session drew from ``jobs_id_seq`` (an id planted ahead of the
  sequence made the owner's next enqueues fail with a unique violation), and a row that
  starts out running or finished carries what those states need (a running job a lease
  and a start, a finished one its finish time): the enqueue role, which may set a new
  job's state but none of those columns, can only create scheduled and available jobs.
  An ordinary new job passes its function's first test.
* The rules of the columns a producer sets are those of ``pgjobs.Task`` exactly
  (``tests/test_boundaries.py`` walks both sides of each bound through Python, the
  table and ``enqueue()``): ``run_at`` gets a domain, between 0001-01-02 and 9999-12-31
  UTC, so that it reads back as a Python datetime in every time zone; ``timeout`` is at
  most 100 years, ``max_retry`` at most 2147483646 (``attempt`` counts to ``max_retry +
  1``); a kind or queue must hold a character that is neither whitespace nor an invisible
  format character (``NAME_RULE``).
  Rows written before keep their values (the rules are added NOT VALID), and the reads
  of ``pgjobs/sql`` go through ``job_time()``, which brings any time into that range.
* ``enqueue()`` refuses the same values with its own messages; ``why()`` and ``doctor()``
  describe a running job without a lease (the rescuer gives it back at its next pass).
* ``workers.weights``: the weight of each of a worker's queues, for operators to see how
  it shares itself out.
* ``workers.kinds``: the job kinds each worker's handlers run; ``doctor()`` names the
  waiting jobs whose kind no live worker serving their queue can run, and ``why()`` says
  so of such a job (a worker that claims one fails the attempt: no handler).
* ``jobs.trace_context``: the enqueuer's trace context (the OpenTelemetry propagator's
  carrier: W3C ``traceparent``, ``tracestate``), written only by an enqueue made with
  tracing on (``pgjobs.tracing``), so that the job's handler span continues the
  enqueuer's trace. A role granted the columns of a new job (``grant_roles``' enqueuer)
  is granted this one too.

The server's instructions per ``job_insert_defaults`` (``python -m bench.server_cost``,
callgrind): 195,200 at 0006, 219,400 here. The rules cost 8,500 of that (each is
prepared per statement, see 0005; the name rule's regular expression is compiled once
per connection), the trigger 15,700, as much as any row trigger costs: PostgreSQL sets
it up for every statement. It is the cheapest guard found that holds: the same checks
as the trigger's WHEN cost 37,100 (the WHEN is read back from the catalog and planned
for every statement), a CHECK constraint 21,600 before its first rule, and column
privileges cannot work, since enqueue_many's COPY and unique enqueues must give the ids
they reserved, and a delayed job its state. A bulk enqueue pays the function for every
row: about 6 microseconds (100,000 jobs by enqueue_many took 1.2 s without the trigger
and 1.8 s with it on the project's machine; with the WHEN, 1.45 s).

Upgrading a populated table: ``run_at`` changes type without a rewrite, but the index
on it (``jobs_state_time_idx``) is rebuilt, and the views that read it are dropped and
made again, as in 0005; the jobs table is locked against reads and writes until the
migration commits.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from pgjobs.migrate import revision_module, run_sql, upgrade_statements

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: Whitespace (Python's ``str.isspace``) and format characters (Unicode category Cf),
#: as of Unicode 14: a name made of these alone looks empty. pgjobs.task.BLANK_RANGES
#: holds the same ranges (a test reads this rule back from the database).
BLANK = (
    r"\t-\r\u001c- \u0085\u00a0\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2"
    r"\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ufeff"
    r"\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
    r"\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
NAME_RULE = f"length(VALUE) <= 255 AND VALUE ~ '[^{BLANK}]'"
#: The times a Python datetime holds in every time zone: a day inside its range.
RUN_AT_MIN = "0001-01-02 00:00:00+00"
RUN_AT_MAX = "9999-12-31 00:00:00+00"
RUN_AT_LAST = "9999-12-30 23:59:59.999999+00"
MAX_SECONDS = 3155760000  # 100 years of 365.25 days, pgjobs.task.MAX_SECONDS

#: (domain, rule before, rule from now on) for the domains 0005 and 0006 made.
RULES = (
    ("kind", "length(VALUE) <= 255 AND btrim(VALUE) <> ''", NAME_RULE),
    ("queue", "length(VALUE) <= 255 AND btrim(VALUE) <> ''", NAME_RULE),
    ("max_retry", "VALUE >= 0", "VALUE >= 0 AND VALUE <= 2147483646"),
    (
        "timeout",
        "VALUE > interval '0'",
        f"VALUE > interval '0' AND VALUE <= interval '{MAX_SECONDS} seconds'",
    ),
)

RUN_AT_DOMAIN = f"""
CREATE DOMAIN {{schema}}.job_run_at AS timestamptz;
ALTER TABLE {{schema}}.jobs ALTER COLUMN run_at TYPE {{schema}}.job_run_at;
ALTER DOMAIN {{schema}}.job_run_at ADD CONSTRAINT job_run_at_check
    CHECK (VALUE >= '{RUN_AT_MIN}' AND VALUE < '{RUN_AT_MAX}') NOT VALID;
"""

RUN_AT_DOMAIN_DOWN = """
ALTER TABLE {schema}.jobs ALTER COLUMN run_at TYPE timestamptz;
DROP DOMAIN {schema}.job_run_at;
"""

UPGRADE = f"""
-- A time as a reader can hold it: the same instant (or NULL), or the nearest one inside
-- the range of job_run_at, for a row written before that rule or by hand.
CREATE FUNCTION {{schema}}.job_time(t timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN t < '{RUN_AT_MIN}' THEN '{RUN_AT_MIN}'::timestamptz
                   WHEN t > '{RUN_AT_LAST}' THEN '{RUN_AT_LAST}'::timestamptz
                   ELSE t END $$;

COMMENT ON FUNCTION {{schema}}.job_time(timestamptz) IS
    'pgjobs: a time clamped into what every client can read back (years 1 to 9999)';

ALTER TABLE {{schema}}.workers ADD COLUMN kinds text[];
COMMENT ON COLUMN {{schema}}.workers.kinds IS
    'the job kinds its handlers run; NULL from a worker that does not say (before 0007)';
ALTER TABLE {{schema}}.workers ADD COLUMN weights int4[];
COMMENT ON COLUMN {{schema}}.workers.weights IS
    'the weight of each of its queues, in the order of queues; NULL before 0007';

CREATE FUNCTION {{schema}}.job_insert_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- An ordinary new job passes in one expression: plpgsql prepares each expression it
    -- evaluates once per transaction, and a one-row enqueue is a transaction of its own.
    -- 'scheduled' and 'available' come first in job_state.
    IF NEW.state <= 'available' AND NEW.id <= currval('{{schema}}.jobs_id_seq') THEN
        RETURN NEW;
    END IF;
    -- (currval() fails in a session that drew no id: an explicit id there is refused.)
    IF NEW.id > currval('{{schema}}.jobs_id_seq') THEN
        RAISE EXCEPTION 'pgjobs: job id % is ahead of the ids this session drew from '
                        '{{schema}}.jobs_id_seq', NEW.id
            USING ERRCODE = 'check_violation',
                  HINT = 'Leave id out, or reserve ids with nextval().';
    END IF;
    IF NEW.state = 'running'
       AND (NEW.lease_expires_at IS NULL OR NEW.started_at IS NULL) THEN
        RAISE EXCEPTION 'pgjobs: a new running job needs started_at and lease_expires_at'
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.state > 'running' AND NEW.finished_at IS NULL THEN
        RAISE EXCEPTION 'pgjobs: a new % job needs finished_at', NEW.state
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION {{schema}}.job_insert_guard() IS
    'pgjobs: refuses a new job with an id ahead of jobs_id_seq, or a state it cannot be in';

-- No WHEN: PostgreSQL reads and plans a trigger's WHEN afresh for every statement, which
-- cost more (24,000 instructions to read this one's back) than calling the function.
CREATE TRIGGER jobs_insert_guard BEFORE INSERT ON {{schema}}.jobs
FOR EACH ROW EXECUTE FUNCTION {{schema}}.job_insert_guard();

ALTER TABLE {{schema}}.jobs ADD COLUMN trace_context jsonb;
COMMENT ON COLUMN {{schema}}.jobs.trace_context IS
    'the enqueuer''s trace context (traceparent, tracestate) when it traced; NULL otherwise';

-- A role that may write a new job's payload (a column grant: grant_roles' enqueuer) may
-- write its trace context: a traced enqueue names the column. Table-wide grants cover
-- the new column already.
DO $$
DECLARE
    grantee oid;
BEGIN
    FOR grantee IN
        SELECT DISTINCT a.grantee
        FROM pg_attribute c, aclexplode(c.attacl) a
        WHERE c.attrelid = '{{schema}}.jobs'::regclass AND c.attname = 'payload'
          AND a.privilege_type = 'INSERT'
    LOOP
        -- (regrole's text is the role's name, quoted where it needs it; 0 is PUBLIC.)
        EXECUTE format('GRANT INSERT (trace_context) ON {{schema}}.jobs TO %s',
                       CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE grantee::regrole::text END);
    END LOOP;
END
$$;
"""

DOWNGRADE = """
ALTER TABLE {schema}.jobs DROP COLUMN trace_context;
ALTER TABLE {schema}.workers DROP COLUMN weights;
ALTER TABLE {schema}.workers DROP COLUMN kinds;
DROP TRIGGER jobs_insert_guard ON {schema}.jobs;
DROP FUNCTION {schema}.job_insert_guard();
DROP FUNCTION {schema}.job_time(timestamptz);
"""

# enqueue() as 0004 defines it, with this revision's rules.
ENQUEUE_0004 = (
    (
        "    IF enqueue.kind IS NULL OR btrim(enqueue.kind, whitespace) = '' THEN\n",
        f"    IF enqueue.kind IS NULL OR enqueue.kind !~ '[^{BLANK}]' THEN\n",
    ),
    (
        "    IF enqueue.queue IS NULL OR btrim(enqueue.queue, whitespace) = '' THEN\n",
        f"    IF enqueue.queue IS NULL OR enqueue.queue !~ '[^{BLANK}]' THEN\n",
    ),
    (
        "    IF enqueue.unique_key IS NOT NULL AND btrim(enqueue.unique_key, whitespace) = ''"
        " THEN\n",
        f"    IF enqueue.unique_key !~ '[^{BLANK}]' THEN\n",
    ),
    (
        "    IF NOT isfinite(enqueue.run_at) THEN\n"
        "        RAISE EXCEPTION 'pgjobs.enqueue: run_at must be a finite time, not %', "
        "enqueue.run_at\n",
        f"    IF enqueue.run_at < '{RUN_AT_MIN}' OR enqueue.run_at >= '{RUN_AT_MAX}' THEN\n"
        "        RAISE EXCEPTION 'pgjobs.enqueue: run_at must be from % to before % (UTC), "
        f"not %', '{RUN_AT_MIN}', '{RUN_AT_MAX}', enqueue.run_at\n",
    ),
)


def _enqueue(version: str) -> str:
    body = upgrade_statements(
        "0004_unique_leader_retention.py",
        "CREATE FUNCTION {schema}.enqueue(",
        "REVOKE ALL ON FUNCTION {schema}.enqueue(",
    )
    body = body.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    if version == "0007":
        for old, new in ENQUEUE_0004:
            if body.count(old) != 1:
                raise RuntimeError(f"0007: enqueue() in 0004 is not shaped as expected: {old}")
            body = body.replace(old, new)
    return body


# why() and doctor() as 0002 defines them, and with a running job that has no lease,
# and a waiting job whose kind no live worker serving its queue has a handler for.
WHY_0002 = "        IF j.lease_expires_at < now() THEN\n"
WHY_0007 = """        IF j.lease_expires_at IS NULL THEN
            lines := lines || 'It has no lease, so no worker holds it: a live worker''s '
                              'rescuer gives it back to its queue (or fails it when no '
                              'retry is left) at its next pass.'::text;
            IF live_total = 0 THEN
                lines := lines || 'No worker is live to rescue it: start a worker.'::text;
            END IF;
        ELSIF j.lease_expires_at < now() THEN
"""
DOCTOR_0002 = """    SELECT count(*), min(x.run_at) INTO n, oldest
    FROM {schema}.jobs x WHERE x.state = 'scheduled' AND x.run_at < now() - interval '1 minute';
"""
DOCTOR_0007 = (
    """    SELECT count(*) INTO n FROM {schema}.jobs x
    WHERE x.state = 'running' AND x.lease_expires_at IS NULL;
    IF n > 0 THEN
        check_name := 'stuck jobs';
        status := 'warn';
        detail := format('%s running job%s no lease: a live worker''s rescuer gives %s back '
                         'at its next pass; is any worker running?', n,
                         CASE WHEN n = 1 THEN ' has' ELSE 's have' END,
                         CASE WHEN n = 1 THEN 'it' ELSE 'them' END);
        RETURN NEXT;
    END IF;

"""
    + DOCTOR_0002
)


# Live workers serving queue q (of the row j) of which none has a handler for j's kind;
# a worker that does not say which kinds it runs (kinds NULL) counts as having them all.
# (x, not w: why() has a record variable w.)
KIND_UNSERVED = """EXISTS (SELECT FROM {schema}.workers x
               WHERE x.heartbeat_at > {schema}.worker_live_after() AND j.queue = ANY (x.queues))
    AND NOT EXISTS (SELECT FROM {schema}.workers x
                    WHERE x.heartbeat_at > {schema}.worker_live_after()
                      AND j.queue = ANY (x.queues)
                      AND (x.kinds IS NULL OR j.kind = ANY (x.kinds)))"""
WHY_KIND_0002 = "    IF j.state = 'available' THEN\n        SELECT count(*) INTO ahead"
WHY_KIND_0007 = (
    f"""    IF {KIND_UNSERVED} THEN
        lines := lines || format('No live worker serving queue "%s" has a handler for kind '
                                 '"%s": a worker that claims it fails the attempt (no '
                                 'handler). Deploy a worker that registers the kind.',
                                 j.queue, j.kind);
    END IF;

"""
    + WHY_KIND_0002
)
DOCTOR_KIND_0002 = "    -- 4. Queues with work that nobody serves, and paused queues.\n"
DOCTOR_KIND_0007 = (
    f"""    -- Waiting jobs of a kind that no live worker serving their queue has a handler for.
    FOR o IN
        SELECT j.queue, j.kind, count(*) AS n
        FROM {{schema}}.jobs j
        WHERE j.state IN ('available', 'scheduled')
          AND {KIND_UNSERVED}
        GROUP BY j.queue, j.kind
        ORDER BY count(*) DESC, j.queue, j.kind
        LIMIT 10
    LOOP
        check_name := 'kinds';
        status := 'warn';
        detail := format('%s job%s of kind "%s" in queue "%s" %s waiting, and no live '
                         'worker serving the queue has a handler for the kind: each attempt '
                         'fails (no handler) until a worker that registers it runs', o.n,
                         CASE WHEN o.n = 1 THEN '' ELSE 's' END, o.kind, o.queue,
                         CASE WHEN o.n = 1 THEN 'is' ELSE 'are' END);
        RETURN NEXT;
    END LOOP;

"""
    + DOCTOR_KIND_0002
)
PATCHES = {
    "why": ((WHY_0002, WHY_0007), (WHY_KIND_0002, WHY_KIND_0007)),
    "doctor": ((DOCTOR_0002, DOCTOR_0007), (DOCTOR_KIND_0002, DOCTOR_KIND_0007)),
}


def _function_0002(name: str, version: str) -> str:
    body = upgrade_statements("0002_operations.py", f"CREATE FUNCTION {{schema}}.{name}(", "\n$$;")
    body = body.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    for old, new in PATCHES[name]:
        if body.count(old) != 1:
            raise RuntimeError(f"0007: {name}() in 0002 is not shaped as expected")
        if version == "0007":
            body = body.replace(old, new)
    return body


def _rules_sql(version: str) -> str:
    statements = []
    for column, before, after in RULES:
        rule, valid = (after, " NOT VALID") if version == "0007" else (before, "")
        statements.append(
            f"ALTER DOMAIN {{schema}}.job_{column} DROP CONSTRAINT job_{column}_check;\n"
            f"ALTER DOMAIN {{schema}}.job_{column} ADD CONSTRAINT job_{column}_check "
            f"CHECK ({rule}){valid};"
        )
    return "\n".join(statements)


def _around_run_at(change: str) -> str:
    """*change*, with the views and functions that read jobs.run_at dropped before and
    made again after, as 0005 does for its columns."""
    domains = revision_module("0005_column_domains.py")
    save = domains.SAVE_AND_DROP_DEPENDENTS.replace("{columns}", "'run_at'")
    return save + change + domains.RECREATE_DEPENDENTS


# grant_roles() as 0004 defines it, granting the enqueuer the trace context too.
GRANT_0004 = "'state) ON {schema}.jobs TO %I', enqueuer)"
GRANT_0007 = "'state, trace_context) ON {schema}.jobs TO %I', enqueuer)"


def _grant_roles(version: str) -> str:
    body = str(revision_module("0004_unique_leader_retention.py")._grant_roles_0004())
    if body.count(GRANT_0004) != 1:
        raise RuntimeError("0007: grant_roles() in 0004 is not shaped as expected")
    return body.replace(GRANT_0004, GRANT_0007) if version == "0007" else body


def _functions(version: str) -> str:
    return "\n".join(
        [
            _enqueue(version),
            _function_0002("why", version),
            _function_0002("doctor", version),
            _grant_roles(version),
        ]
    )


def upgrade() -> None:
    run_sql(_around_run_at(RUN_AT_DOMAIN))
    run_sql("\n".join([UPGRADE, _rules_sql("0007"), _functions("0007")]))


def downgrade() -> None:
    run_sql("\n".join([DOWNGRADE, _rules_sql("0006"), _functions("0006")]))
    run_sql(_around_run_at(RUN_AT_DOMAIN_DOWN))
