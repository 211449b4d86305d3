"""Weighted queue selection for batch claims.

A worker with *n* free slots asks each queue for a quota of jobs. Quotas come from
smooth weighted round-robin (the nginx algorithm): each of the *n* picks adds every
queue's weight to its credit, gives the slot to the queue with most credit, and takes
the total weight from that queue's credit (computed for all *n* picks at once, see
:meth:`QueuePlanner._pick`). Over any run of picks each queue gets its
weight's share to within one slot, even when slots free up one at a time, and the state
carries over between batches so small batches add up to the right shares.

A queue that returns fewer jobs than its quota has nothing more to give: its unused
quota is lent to the queues that filled theirs (and to those that got no quota this
time), by the same rule, until the slots are filled or every queue came up short. So a
worker never idles while any of its queues has work.

Strict priority instead asks the heaviest queue first and passes on only what it
could not fill.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["QueuePlanner"]


class QueuePlanner:
    """Decides how many jobs to ask each queue for; no I/O, one per worker."""

    def __init__(self, weights: Mapping[str, int], *, strict: bool = False) -> None:
        if not weights:
            raise ValueError("at least one queue is needed")
        self.weights = dict(weights)
        self.strict = strict
        self._credit = dict.fromkeys(self.weights, 0)
        # Strict order: heaviest first; ties keep the configured order.
        self._strict_order = sorted(self.weights, key=lambda q: -self.weights[q])

    def first_round(self, slots: int) -> dict[str, int]:
        """Quotas for a claim of *slots* jobs."""
        if self.strict:
            return {self._strict_order[0]: slots}
        return self._pick(slots, self.weights, self._credit)

    def next_round(
        self, slots: int, asked: Mapping[str, int], got: Mapping[str, int], dry: set[str]
    ) -> dict[str, int]:
        """Quotas for the *slots* still free after a round that *asked* and *got* as given.

        *dry* accumulates the queues that came up short in this batch; they are not
        asked again. An empty result means there is nothing more to try.
        """
        for queue, quota in asked.items():
            if got.get(queue, 0) < quota:
                dry.add(queue)
        if slots <= 0:
            return {}
        if self.strict:
            for queue in self._strict_order:
                if queue not in dry:
                    return {queue: slots}
            return {}
        lenders = {q: w for q, w in self.weights.items() if q not in dry}
        if not lenders:
            return {}
        # Lending uses a throwaway credit table so it does not skew the long-run shares.
        return self._pick(slots, lenders, dict.fromkeys(lenders, 0))

    @staticmethod
    def _pick(slots: int, weights: Mapping[str, int], credit: dict[str, int]) -> dict[str, int]:
        """Smooth weighted round-robin over *slots* picks, in one pass.

        Picking slot by slot costs slots x queues steps, a third of a claim's time at
        500 slots over 100 queues. All *slots* picks
        together add ``slots * weight`` to each queue's credit and take ``total`` for
        every slot it won; so each queue gets the whole part of its credit (counted in
        units of ``total``), and the slots left over go to the largest remainders, ties
        to the queue configured first. For one slot that is exactly the slot-by-slot
        pick; for more, each queue still ends within one slot of its weight's share,
        with the same credit carried to the next claim. O(queues log queues).
        """
        total = sum(weights.values())
        owed = {queue: credit[queue] + slots * weight for queue, weight in weights.items()}
        quotas = {queue: max(0, due // total) for queue, due in owed.items()}

        def remainder(queue: str) -> int:
            return owed[queue] - quotas[queue] * total

        left = slots - sum(quotas.values())
        # sorted() is stable, reversed or not: equal remainders keep the configured order.
        for queue in sorted(owed, key=remainder, reverse=True)[:left]:
            quotas[queue] += 1
        while left < 0:  # only when a queue in debt was rounded up to 0: give back
            queue = min((q for q in quotas if quotas[q]), key=remainder)
            quotas[queue] -= 1
            left += 1
        for queue in owed:
            credit[queue] = remainder(queue)
        return {queue: quota for queue, quota in quotas.items() if quota}
