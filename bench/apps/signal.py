"""How a handler inside a worker process tells the benchmark something: one UDP datagram.

The benchmark sets ``BENCH_SIGNAL_PORT`` in the worker's environment and listens on
127.0.0.1 at that port. A datagram is sent without waiting for anyone, costs a few
microseconds, and is the same code for every system, so the measurement is fair.

Times are ``CLOCK_MONOTONIC``, which on Linux is one clock for all processes.
"""

from __future__ import annotations

import os
import socket
import time

PORT_VARIABLE = "BENCH_SIGNAL_PORT"

_port = int(os.environ.get(PORT_VARIABLE, "0"))
_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
_first_seen = False


def now() -> float:
    """The clock every timestamp of the benchmark is taken from."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def send(tag: str, value: int = 0) -> None:
    """Report ``tag value now()`` to the benchmark, if it listens."""
    if _port:
        _socket.sendto(f"{tag} {value} {now()!r}".encode(), ("127.0.0.1", _port))


def noop_called() -> None:
    """Call from the no-op handler: reports only the first call (the drain's start)."""
    global _first_seen
    if not _first_seen:
        _first_seen = True
        send("start")


def ping_called(seq: int) -> None:
    """Call first thing in the ping handler: reports when this handler started."""
    send("ping", seq)
