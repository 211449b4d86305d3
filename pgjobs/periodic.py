"""Periodic jobs: a task enqueued at every tick of a schedule, by one worker.

Register them on the server (every worker process registers the same ones)::

    server.periodic("*/5 * * * *", pgjobs.Task("sync_rates"))               # cron, UTC
    server.periodic("0 7 * * mon-fri", pgjobs.Task("digest"), tz="Europe/Paris")
    server.periodic(timedelta(seconds=30), pgjobs.Task("heartbeat_check"))  # interval

How each tick becomes exactly one job, however many workers run::

    workers ──► leader election ({schema}.leader) ──► the leader's scheduler pass (~1 s)
                                                      for every tick now due:
                                                        enqueue_unique(task, key =
                                                          "periodic:<name>:<tick, UTC ISO>")

* Only the leader (see ``pgjobs/_worker/leader.py``) runs the scheduler, so normally one
  worker enqueues each tick.
* The enqueue is also idempotent per tick: its unique key names the schedule and the
  tick, and is held for well past the next tick. A leader change (a crash, a deploy, a
  leader that stalled and lost its term but does not know it yet) therefore cannot
  double a tick: a second enqueue of the same tick is a duplicate.
* The job's ``run_at`` is the tick's time (plus the template's ``delay``), so the row
  says which tick it is for.

Leader changes and missed ticks. The leader's scheduler enqueues each tick within about
a second of its time, by the leader's clock (keep clocks in sync, as NTP does). When a
worker becomes leader it looks at when the previous leader was last renewed (the
``leader`` table records it, and a graceful stop records the resignation):

* If that was at most :data:`LATE_GRACE` seconds ago (or five leader intervals, if
  ``Config.leader_interval`` is over 12 s), this is a *handover* (a crashed
  leader's term ran out, a deploy restarted the leader): the new leader enqueues every
  tick since then, late, so no tick is lost; the ticks the old leader had enqueued are
  duplicates of themselves and add nothing.
* Otherwise no leader ran for a while (no worker was running, or none could reach the
  database), and the ticks in between were *missed*. ``catch_up`` decides:

  * ``"skip"`` (the default): nothing; the schedule resumes at its next tick.
  * ``"last"``: the most recent tick runs once, now, unless it already ran (its key
    is still held): a nightly job runs after a night of downtime, once, however many
    ticks were missed. A brand-new schedule counts as having missed its last tick.

Time zones and DST: see :mod:`pgjobs.cron`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from .cron import Cron, Every
from .errors import ConfigurationError, InvalidTaskError
from .task import MAX_SECONDS, Task, _check_name, encode_payload

__all__ = ["HANDOVER_MARGIN", "LATE_GRACE", "CatchUp", "Handover", "Periodic"]

CatchUp = Literal["skip", "last"]
#: A new leader whose predecessor was last renewed at most this many seconds ago takes
#: over its ticks (late, not missed); after a longer gap the ticks were missed.
LATE_GRACE = 60.0
#: A new leader re-enqueues ticks from this many seconds before its predecessor's last
#: renewal: ticks it may not have got to (the others are duplicates, which add nothing),
#: and leeway for clocks that disagree a little.
HANDOVER_MARGIN = 30.0


@dataclass(frozen=True, slots=True)
class Handover:
    """The previous leader's term, as a new leader finds it in the ``leader`` table."""

    #: When its term started: it had enqueued (or skipped as missed) every tick before.
    elected_at: datetime
    #: Its last renewal, or its resignation: it may not have got to ticks after this.
    renewed_at: datetime

    def resume_from(self, first_pass: float) -> datetime:
        """Where a successor takes over: :data:`HANDOVER_MARGIN` before the last renewal,
        but not before the term started if it lasted long enough (*first_pass*
        seconds) for the predecessor to have made its first scheduler pass."""
        start = self.renewed_at - timedelta(seconds=HANDOVER_MARGIN)
        if (self.renewed_at - self.elected_at).total_seconds() >= first_pass:
            start = max(start, self.elected_at)
        return start


@dataclass(frozen=True, slots=True)
class Periodic:
    """One periodic job: *task* enqueued at every tick of *schedule*.

    :param name: names the schedule in the ticks' unique keys and in logs; unique per
        server, 1 to 255 characters.
    :param schedule: a :class:`~pgjobs.cron.Cron` or :class:`~pgjobs.cron.Every`.
    :param task: the template of every tick's job; no ``run_at``, ``unique_key`` or
        ``unique_for`` (the scheduler sets them).
    :param catch_up: ``"skip"`` or ``"last"``: what a starting leader does about ticks
        missed while no worker ran (see the module docstring).
    """

    name: str
    schedule: Cron | Every
    task: Task
    catch_up: CatchUp = "skip"

    def __post_init__(self) -> None:
        if not isinstance(self.task, Task):
            raise ConfigurationError(f"expected a pgjobs.Task, got {type(self.task).__name__}")
        try:
            _check_name(self.name, "periodic job name")
        except InvalidTaskError as exc:
            raise ConfigurationError(str(exc)) from None
        if not isinstance(self.schedule, Cron | Every):
            raise ConfigurationError(f"not a schedule: {self.schedule!r}")
        for field in ("run_at", "unique_key", "unique_for"):
            if getattr(self.task, field) is not None:
                raise ConfigurationError(
                    f"periodic job {self.name!r}: its task must not set {field}; "
                    "the scheduler sets it for every tick"
                )
        if self.catch_up not in ("skip", "last"):
            raise ConfigurationError(f"catch_up must be 'skip' or 'last', not {self.catch_up!r}")
        encode_payload(self.task.payload)  # an unencodable payload fails now, not at a tick

    def key(self, tick: datetime) -> str:
        """The unique key of *tick*'s job: ``periodic:<name>:<tick in UTC, ISO 8601>``."""
        return f"periodic:{self.name}:{tick.astimezone(UTC).isoformat()}"

    def task_for(self, tick: datetime, now: datetime, grace: float = LATE_GRACE) -> Task:
        """The job to enqueue for *tick*, at *now*.

        Its key is held until well after the following tick, so that every attempt to
        enqueue this tick (by a later leader's handover, or ``catch_up="last"`` while this
        is the most recent tick) is a duplicate of the first.
        """
        following = self.schedule.next_after(tick)
        hold = (following - now).total_seconds() + 2 * grace + HANDOVER_MARGIN
        return dataclasses.replace(
            self.task,
            run_at=tick + timedelta(seconds=self.task.delay or 0),
            delay=None,
            unique_key=self.key(tick),
            unique_for=min(max(hold, 1.0), MAX_SECONDS),
        )
