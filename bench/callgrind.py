"""Counting instructions with valgrind's callgrind: what ``bench.client_cost`` and
``bench.server_cost`` share. A count, unlike a timing, repeats whatever else the machine
is doing."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Sequence

_COLLECTED = re.compile(r"Collected : (\d+)")


def available() -> bool:
    """Whether valgrind is installed; says so on stderr when it is not."""
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: nothing to count with", file=sys.stderr)
        return False
    return True


def argv(command: Sequence[str]) -> list[str]:
    """*command* run under callgrind, its profile thrown away (only the total is read)."""
    return ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command]


def instructions(done: subprocess.CompletedProcess[str]) -> int:
    """The instructions a finished callgrind run counted, or an error showing its stderr."""
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(
            f"callgrind counted nothing (exit {done.returncode}):\n{done.stderr[-2000:]}"
        )
    return int(found.group(1))
