"""Backoff for the worker's own database work when Postgres is away."""

from __future__ import annotations

import random

__all__ = ["DB_ERRORS", "reconnect_delay"]

import psycopg
from psycopg_pool import PoolTimeout

#: What a background loop survives: the database went away, or a statement failed.
DB_ERRORS: tuple[type[BaseException], ...] = (psycopg.Error, PoolTimeout, OSError)


def reconnect_delay(failures: int, *, first: float = 0.1, cap: float = 5.0) -> float:
    """Exponential backoff with full jitter: 0.1 s, 0.2 s, ... up to *cap* seconds."""
    return random.uniform(first / 2, min(cap, first * 2 ** max(0, failures - 1)))
