"""The worker's threads for sync handlers (pgjobs/_worker/threads.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from pgjobs._worker.threads import DaemonThreadPool


async def test_every_result_reaches_the_loop_even_past_a_failing_callback() -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    pool = DaemonThreadPool(8)
    got: dict[int, Any] = {}
    all_in = asyncio.Event()
    total = 500

    def done_for(n: int) -> Any:
        def done(result: Any, error: BaseException | None) -> None:
            got[n] = error if error is not None else result
            if len(got) == total:
                all_in.set()
            if n == 7:
                raise RuntimeError("a callback that fails")

        return done

    def work(n: int) -> int:
        if n == 3:
            raise ValueError("a handler that fails")
        return n * 2

    for n in range(total):
        pool.submit(loop, work, (n,), done_for(n))
    await asyncio.wait_for(all_in.wait(), 30)
    pool.shutdown()
    assert isinstance(got.pop(3), ValueError)
    assert got == {n: n * 2 for n in range(total) if n != 3}
    assert [context["exception"].args for context in errors] == [("a callback that fails",)]
