"""Worker processes and the signals their handlers send back.

Every process the benchmark starts is registered here and ended by :func:`stop_all`,
which ``bench.run`` calls on any exit (normal, exception, Ctrl-C, SIGTERM). Workers run
in their own session so that a Ctrl-C reaches only us, and we stop them in order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.apps.signal import PORT_VARIABLE
from bench.systems.base import REPO, WorkerSpec

_running: list[subprocess.Popen[bytes]] = []


class Signals:
    """The UDP socket that handlers report to (see :mod:`bench.apps.signal`)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]

    def receive(self, timeout: float) -> tuple[str, int, float] | None:
        """The next ``(tag, value, time)``, or None after *timeout* seconds."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(256)
        except TimeoutError:
            return None
        tag, value, at = data.decode().split()
        return tag, int(value), float(at)

    def wait_for(self, tag: str, value: int | None, timeout: float) -> float | None:
        """Time of the next signal *tag* (with *value*, if given); others are dropped."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got = self.receive(left)
            if got and got[0] == tag and (value is None or got[1] == value):
                return got[2]
        return None

    def drain(self) -> None:
        """Forget anything already sent (late pings of an earlier phase)."""
        while self.receive(0.001):
            pass

    def close(self) -> None:
        self.sock.close()


@contextmanager
def worker_process(spec: WorkerSpec, signals: Signals, log: Path) -> Iterator[int]:
    """Run one worker for the length of the block; yield its pid."""
    env = dict(spec.env)
    env[PORT_VARIABLE] = str(signals.port)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            spec.argv,
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _running.append(proc)
    try:
        yield proc.pid
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited early with {proc.returncode}; see {log}")
    finally:
        stop(proc)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the worker's process group, then SIGKILL what is left after *grace*."""
    if proc in _running:
        _running.remove(proc)
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(5)
    _signal_group(proc.pid, signal.SIGKILL)  # children that outlived their parent


def stop_all() -> None:
    for proc in list(_running):
        stop(proc, grace=3.0)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of *pid* and its descendants, in MB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo, seen = 0, [pid], False
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
                seen = True
    return total / 1024 if seen else None
